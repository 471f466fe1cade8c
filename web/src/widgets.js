// Widgets for literal inputs, made from the node schema's input declarations:
// numbers with min/max/step, text (single and multi-line), enums, booleans,
// file choosers for model folders, and an upload button for image inputs.

import { LiteGraph } from "@comfyorg/litegraph"

const SAFE_MAX = Number.MAX_SAFE_INTEGER

function decimals(step) {
  if (!step || Number.isInteger(step)) return 0
  const text = String(step)
  if (text.includes("e-")) return Number(text.split("e-")[1])
  return Math.min(6, (text.split(".")[1] || "").length)
}

function clampNumber(value, spec) {
  let v = Number(value)
  if (!Number.isFinite(v)) v = Number(spec.default ?? 0)
  if (spec.type === "INT") v = Math.round(v)
  const min = spec.min ?? (spec.type === "INT" ? -SAFE_MAX : -Infinity)
  const max = spec.max ?? (spec.type === "INT" ? SAFE_MAX : Infinity)
  v = Math.min(Math.max(v, Math.max(min, -SAFE_MAX)), Math.min(max, SAFE_MAX))
  if (spec.type === "FLOAT" && spec.step) {
    // Keep floats tidy (0.30000000000000004 -> 0.3) without snapping to the step grid.
    v = Number(v.toFixed(Math.max(decimals(spec.step), 6)))
  }
  return v
}

/** The value a new node's widget starts with. */
export function initialValue(spec, files) {
  if (spec.default !== undefined) return spec.default
  switch (spec.type) {
    case "INT":
    case "FLOAT":
      return clampNumber(spec.min ?? 0, spec)
    case "BOOLEAN":
      return false
    case "ENUM":
      return spec.choices?.[0] ?? ""
    default:
      if (spec.folder) return files(spec.folder)[0] ?? ""
      return ""
  }
}

/** Normalise a value read from a workflow for a widget of this input. */
export function coerceValue(spec, value) {
  if (spec.type === "INT" || spec.type === "FLOAT") {
    return typeof value === "number" ? value : Number(value)
  }
  if (spec.type === "BOOLEAN") return Boolean(value)
  return value
}

function wrapLines(ctx, text, width, maxLines) {
  const lines = []
  for (const para of String(text).split("\n")) {
    let line = ""
    for (const word of para.split(/(\s+)/)) {
      const next = line + word
      if (line && ctx.measureText(next).width > width) {
        lines.push(line)
        line = word.trimStart()
      } else {
        line = next
      }
      if (lines.length >= maxLines) break
    }
    lines.push(line)
    if (lines.length >= maxLines) break
  }
  return lines.slice(0, maxLines)
}

/**
 * Edit text in place: a <textarea>/<input> laid exactly over the widget.
 * Enter (Ctrl+Enter in a textarea) or leaving the field commits, Escape cancels.
 */
export function editTextInPlace(canvas, node, widget, { multiline, height, onCommit }) {
  document.querySelector(".lcm-inline-editor")?.remove()
  const el = document.createElement(multiline ? "textarea" : "input")
  el.className = "lcm-inline-editor"
  el.value = widget.value ?? ""
  el.dataset.node = node.properties?.id ?? ""
  el.dataset.input = widget.name
  const rect = canvas.canvas.getBoundingClientRect()
  const scale = canvas.ds.scale
  const [x, y] = canvas.ds.convertOffsetToCanvas([node.pos[0] + 15, node.pos[1] + widget.y])
  Object.assign(el.style, {
    left: `${rect.left + x + window.scrollX}px`,
    top: `${rect.top + y + window.scrollY}px`,
    width: `${(node.size[0] - 30) * scale}px`,
    height: `${height * scale}px`,
    fontSize: `${12 * scale}px`,
  })
  document.body.append(el)
  el.focus()
  el.select?.()
  let done = false
  const finish = (commit) => {
    if (done) return
    done = true
    const value = el.value
    el.remove()
    if (commit && value !== widget.value) onCommit(value)
    canvas.setDirty(true, true)
  }
  el.addEventListener("keydown", (e) => {
    e.stopPropagation()
    if (e.key === "Escape") finish(false)
    else if (e.key === "Enter" && (!multiline || e.ctrlKey || e.metaKey)) {
      e.preventDefault()
      finish(true)
    }
  })
  el.addEventListener("blur", () => finish(true))
  return el
}

/** A text widget drawn as a box of wrapped lines; a click edits it in place. */
function textBoxWidget(node, spec, value, onChange, { lines }) {
  const lineHeight = 14
  const height = lines > 1 ? lines * lineHeight + 10 : LiteGraph.NODE_WIDGET_HEIGHT
  const widget = {
    type: "lcm_text",
    name: spec.name,
    value,
    options: { multiline: lines > 1 },
    y: 0,
    computeSize(width) { return [width ?? node.size[0], height] },
    draw(ctx, drawNode, width, y, _H, lowQuality) {
      const margin = 15
      ctx.save()
      ctx.fillStyle = LiteGraph.WIDGET_BGCOLOR
      ctx.strokeStyle = LiteGraph.WIDGET_OUTLINE_COLOR
      ctx.beginPath()
      ctx.roundRect(margin, y, width - margin * 2, height, lines > 1 ? 4 : height * 0.5)
      ctx.fill()
      if (lowQuality) { ctx.restore(); return }
      ctx.stroke()
      ctx.font = "12px Arial, sans-serif"
      ctx.textBaseline = "middle"
      const inner = width - margin * 2 - 20
      const text = String(this.value ?? "")
      if (lines > 1) {
        ctx.fillStyle = LiteGraph.WIDGET_SECONDARY_TEXT_COLOR
        ctx.fillText(spec.name, margin + 8, y + 9)
        ctx.fillStyle = text ? LiteGraph.WIDGET_TEXT_COLOR : "#777"
        const body = wrapLines(ctx, text || "(empty)", inner, lines - 1)
        body.forEach((line, i) => ctx.fillText(line, margin + 8, y + 9 + (i + 1) * lineHeight))
      } else {
        ctx.fillStyle = LiteGraph.WIDGET_SECONDARY_TEXT_COLOR
        ctx.fillText(spec.name, margin + 10, y + height / 2)
        ctx.textAlign = "right"
        ctx.fillStyle = LiteGraph.WIDGET_TEXT_COLOR
        let shown = text
        const room = inner - ctx.measureText(spec.name).width - 10
        while (shown && ctx.measureText(shown).width > room) shown = shown.slice(0, -2)
        if (shown !== text) shown += "…"
        ctx.fillText(shown, width - margin - 10, y + height / 2)
      }
      ctx.restore()
    },
    onPointerDown(pointer, ownNode, canvas) {
      if (ownNode.getSlotFromWidget?.(this)?.link != null) return true
      pointer.onClick = () => {
        editTextInPlace(canvas, ownNode, this, {
          multiline: lines > 1,
          height,
          onCommit: (v) => {
            const old = this.value
            this.value = v
            onChange(this, v, old)
          },
        })
      }
      return true
    },
  }
  return widget
}

/**
 * Add the widget for one schema input to `node`. `env` gives:
 *   files(folder) -> [names]   (the model-folder listing, kept fresh by the app)
 *   changed(node, name, value, old)   (after every user edit)
 *   upload(node, widget)       (image upload for input-folder widgets)
 *   paintMask(node, widget)    (the mask painter for input-folder widgets; optional)
 */
export function addWidgetFor(node, spec, env) {
  const value = initialValue(spec, env.files)
  const notify = (widget, v, old) => env.changed(node, widget.name, v, old)
  let widget
  switch (spec.type) {
    case "INT":
    case "FLOAT": {
      const isInt = spec.type === "INT"
      const step = spec.step ?? (isInt ? 1 : 0.01)
      widget = node.addWidget("number", spec.name, value, (v, _canvas, _node, _pos, _e) => {
        const fixed = clampNumber(v, spec)
        widget.value = fixed
      }, {
        min: spec.min != null ? Math.max(spec.min, -SAFE_MAX) : undefined,
        max: spec.max != null ? Math.min(spec.max, SAFE_MAX) : undefined,
        step2: step,
        precision: isInt ? 0 : Math.max(decimals(step), 2),
      })
      break
    }
    case "BOOLEAN":
      widget = node.addWidget("toggle", spec.name, Boolean(value), () => {}, { on: "true", off: "false" })
      break
    case "ENUM":
      widget = node.addWidget("combo", spec.name, value, () => {}, { values: spec.choices ?? [] })
      break
    case "STRING":
      if (spec.folder) {
        widget = node.addWidget("combo", spec.name, value, () => {}, {
          values: () => {
            const names = env.files(spec.folder)
            const current = widget?.value
            return current && !names.includes(current) ? [current, ...names] : names
          },
        })
        widget.folder = spec.folder
      } else {
        widget = node.addCustomWidget(
          textBoxWidget(node, spec, value, notify, { lines: spec.multiline ? 5 : 1 }),
        )
      }
      break
    default:
      // A literal type this editor has no special widget for: edit it as JSON-ish text.
      widget = node.addCustomWidget(textBoxWidget(node, spec, value, notify, { lines: 1 }))
  }
  widget.spec = spec
  widget.tooltip = spec.description
  if (widget.type !== "lcm_text") {
    const original = widget.callback
    widget.callback = function (v, canvas, n, pos, e) {
      const old = widget._lastValue
      original?.call(this, v, canvas, n, pos, e)
      widget._lastValue = widget.value
      if (old !== widget.value) notify(widget, widget.value, old)
    }
    widget._lastValue = widget.value
  }
  if (spec.type === "STRING" && spec.folder === "input") {
    node.addWidget("button", `upload ${spec.name}…`, null, () => env.upload(node, widget), {})
    if (env.paintMask) node.addWidget("button", "paint mask…", null, () => env.paintMask(node, widget), {})
  }
  return widget
}

/** Set a widget's value from a workflow (no change notification). */
export function setWidgetValue(widget, value) {
  const v = coerceValue(widget.spec, value)
  widget.value = v
  widget._lastValue = v
}
