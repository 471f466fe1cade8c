// Node classes made from the server's node schema (GET /api/nodes): every
// node a pack registers appears in the palette with no change here.

import { LGraphBadge, LGraphCanvas, LGraphNode, LiteGraph, SlotShape } from "@comfyorg/litegraph"

import { anyType, setLinkRules, typeColor } from "./types.js"
import { addWidgetFor } from "./widgets.js"

const IMAGE_MIN_HEIGHT = 160

/** Draw state the app sets on a node: problems, running, images. */
function initState(node) {
  node.lcm = {
    problems: [], // [{input, message}]
    running: false,
    images: [], // [{url, img}]
    preview: null, // {url, img}
    cached: false,
  }
}

function loadImage(url, node) {
  const img = new Image()
  img.onload = () => node.setDirtyCanvas(true, true)
  img.src = url
  return img
}

/** Show these image URLs in the node's body (outputs, upload previews). */
export function setNodeImages(node, urls) {
  node.lcm.images = urls.map((url) => ({ url, img: loadImage(url, node) }))
  ensureImageRoom(node)
  node.setDirtyCanvas(true, true)
}

export function setNodePreview(node, url) {
  if (!url) {
    node.lcm.preview = null
  } else if (node.lcm.preview?.url !== url) {
    // Drawn when the node has room below its widgets; the side panel always shows it.
    node.lcm.preview = { url, img: loadImage(url, node) }
  }
  node.setDirtyCanvas(true, true)
}

function contentBottom(node) {
  let bottom = 0
  for (const w of node.widgets ?? []) {
    const h = w.computedHeight ?? (w.computeSize ? w.computeSize(node.size[0])[1] : LiteGraph.NODE_WIDGET_HEIGHT)
    bottom = Math.max(bottom, (w.y ?? 0) + h)
  }
  const slots = Math.max(node.inputs?.filter((s) => !s.widget).length ?? 0, node.outputs?.length ?? 0)
  return Math.max(bottom, slots * LiteGraph.NODE_SLOT_HEIGHT + 6)
}

function ensureImageRoom(node) {
  const needed = contentBottom(node) + IMAGE_MIN_HEIGHT
  if (node.size[1] < needed) node.setSize([Math.max(node.size[0], 220), needed])
}

function drawFitted(ctx, img, x, y, w, h) {
  if (!img.complete || !img.naturalWidth || w <= 0 || h <= 0) return
  const scale = Math.min(w / img.naturalWidth, h / img.naturalHeight)
  const dw = img.naturalWidth * scale
  const dh = img.naturalHeight * scale
  ctx.imageSmoothingEnabled = scale < 1
  ctx.drawImage(img, x + (w - dw) / 2, y + (h - dh) / 2, dw, dh)
  ctx.imageSmoothingEnabled = true
}

function drawBodyImages(node, ctx) {
  let shown = node.lcm.preview && node.lcm.running ? [node.lcm.preview] : node.lcm.images
  if (!shown.length && node.lcm.preview) shown = [node.lcm.preview]
  if (!shown.length) return
  const top = contentBottom(node) + 6
  const height = node.size[1] - top - 6
  const width = node.size[0] - 12
  if (height < 20) return
  const n = shown.length
  const cols = Math.ceil(Math.sqrt(n))
  const rows = Math.ceil(n / cols)
  const cw = width / cols
  const ch = height / rows
  shown.forEach((entry, i) => {
    drawFitted(ctx, entry.img, 6 + (i % cols) * cw, top + Math.floor(i / cols) * ch, cw - 2, ch - 2)
  })
}

function wrapText(ctx, text, width) {
  const lines = []
  let line = ""
  for (const word of String(text).split(/\s+/)) {
    const next = line ? `${line} ${word}` : word
    if (line && ctx.measureText(next).width > width) {
      lines.push(line)
      line = word
    } else {
      line = next
    }
  }
  if (line) lines.push(line)
  return lines
}

/** The node's validation / run problems, in a red box under the node. */
function drawProblems(node, ctx) {
  const problems = node.lcm.problems
  if (!problems.length) return
  ctx.save()
  ctx.font = "12px Arial, sans-serif"
  ctx.textBaseline = "top"
  ctx.textAlign = "left"
  const width = Math.max(node.size[0], 300)
  const lines = problems.flatMap((p) => wrapText(ctx, (p.input ? `${p.input}: ` : "") + p.message, width - 12))
  const lineHeight = 15
  const y0 = node.size[1] + 14
  ctx.fillStyle = "rgba(80, 10, 10, 0.92)"
  ctx.beginPath()
  ctx.roundRect(0, y0, width, lines.length * lineHeight + 8, 4)
  ctx.fill()
  ctx.fillStyle = "#ffb4b4"
  lines.forEach((line, i) => ctx.fillText(line, 6, y0 + 4 + i * lineHeight))
  // Outline the widget of each input that has a problem.
  ctx.strokeStyle = "#ff5050"
  ctx.lineWidth = 2
  for (const p of problems) {
    const w = p.input && node.widgets?.find((x) => x.name === p.input)
    if (!w || w.y == null) continue
    const h = (w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT + 4) - 4
    ctx.beginPath()
    ctx.roundRect(12, w.y - 2, node.size[0] - 24, h + 4, 6)
    ctx.stroke()
  }
  ctx.restore()
}

function runningStroke() {
  if (this.lcm?.running) return { padding: 6, lineWidth: 3, color: "#4caf50" }
}

/** Shared behaviour of schema nodes and placeholders for unknown types. */
function decorate(node, nodeId) {
  initState(node)
  node.properties ??= {}
  node.properties.id = nodeId ?? ""
  node.badges = [() => new LGraphBadge({ text: node.properties.id || "", bgColor: "#333", fgColor: "#ccc", fontSize: 11, height: 18 })]
  node.strokeStyles.running = runningStroke
}

/**
 * Register one LGraphNode subclass per schema node. `env` is passed to the
 * widgets (file listings, change notification, upload).
 */
export function registerSchema(schema, env) {
  setLinkRules(schema.link_rules)
  // Replace whatever an earlier schema registered (plugins may have changed).
  for (const type of Object.keys(LiteGraph.registered_node_types)) LiteGraph.unregisterNodeType(type)
  // Links take their type's colour, for the built-in types and every pack's own.
  for (const spec of Object.values(schema.nodes)) {
    for (const slot of [...spec.inputs, ...spec.outputs]) LGraphCanvas.link_type_colors[slot.type] ??= typeColor(slot.type)
  }
  for (const [type, spec] of Object.entries(schema.nodes)) {
    class SchemaNode extends LGraphNode {
      static title = spec.display_name || type
      static lcmSpec = spec

      constructor(title) {
        super(title ?? SchemaNode.title, type)
        decorate(this, "")
        this.lcmSpec = spec
        this.serialize_widgets = true
        for (const input of spec.inputs) {
          const slotInfo = {
            color_on: typeColor(input.type),
            color_off: typeColor(input.type),
          }
          if (input.widget) {
            const widget = addWidgetFor(this, input, env)
            slotInfo.widget = { name: widget.name }
          } else if (!input.required) {
            slotInfo.shape = SlotShape.HollowCircle
            slotInfo.label = `${input.name} (optional)`
          }
          if (input.description) slotInfo.tooltip = input.description
          this.addInput(input.name, input.type, slotInfo)
        }
        for (const output of spec.outputs) {
          this.addOutput(output.name, output.type, {
            color_on: typeColor(output.type),
            color_off: typeColor(output.type),
          })
        }
        if (spec.output_node) this.color = "#335533"
        const size = this.computeSize()
        this.setSize([Math.max(size[0], 240), size[1]])
        if (spec.output_node) this.setSize([Math.max(this.size[0], 260), this.size[1] + IMAGE_MIN_HEIGHT])
      }

      onDrawBackground(ctx) {
        if (!this.flags.collapsed) drawBodyImages(this, ctx)
      }

      onDrawForeground(ctx) {
        drawProblems(this, ctx)
      }

      onWidgetChanged(name) {
        env.touched?.(this, name)
      }

      onConnectionsChange(...args) {
        env.connectionsChanged?.(this, ...args)
      }

      getExtraMenuOptions(_canvas, options) {
        options.unshift({ content: "Rename node id…", callback: () => env.renameNode?.(this) }, null)
        return options
      }
    }
    Object.defineProperty(SchemaNode, "name", { value: `${type}Node` })
    LiteGraph.registerNodeType(type, SchemaNode)
    SchemaNode.category = spec.category || "other"
    SchemaNode.description = spec.description
  }
}

/**
 * A node whose type the server does not know (a pack that is not installed):
 * it keeps its inputs so that saving the workflow loses nothing.
 */
export class MissingNode extends LGraphNode {
  constructor(type, rawInputs, linkInputs) {
    super(`${type} (unknown type)`, type)
    decorate(this, "")
    this.lcmMissing = { type, rawInputs }
    this.color = "#552222"
    this.bgcolor = "#3a2020"
    for (const name of linkInputs) this.addInput(name, anyType())
    this.setSize([260, Math.max(60, linkInputs.length * LiteGraph.NODE_SLOT_HEIGHT + 30)])
  }

  onDrawForeground(ctx) {
    drawProblems(this, ctx)
  }
}

/** Make sure a MissingNode has an output of this name (for links from it). */
export function ensureMissingOutput(node, name) {
  let index = node.outputs?.findIndex((o) => o.name === name) ?? -1
  if (index < 0) {
    node.addOutput(name, anyType())
    index = node.outputs.length - 1
  }
  return index
}

