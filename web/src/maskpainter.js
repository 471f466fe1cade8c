// The mask painter: paint the area to repaint over an input image, then save it
// as that image's alpha (transparent = repaint), which is how LoadImage's MASK
// output and ComfyUI's mask editor read it. Only the mask travels: the server
// puts it into the original's alpha (a canvas would lose the colour of every
// fully transparent pixel it exports).

const MASK_COLOUR = "rgb(255, 40, 80)"

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props)
  node.append(...children)
  return node
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image()
    img.onload = () => resolve(img)
    img.onerror = () => reject(new Error(`could not load ${url}`))
    img.src = url
  })
}

/** A name for the painted copy: photo.png -> photo-mask.png (photo-mask.png stays). */
export function maskName(name) {
  const base = String(name).split("/").pop().replace(/\.[^.]*$/, "")
  return `${base.endsWith("-mask") ? base : `${base}-mask`}.png`
}

/**
 * Open the painter over `imageUrl`. Resolves with a PNG Blob whose alpha is the
 * mask (0 where painted), or null when cancelled.
 */
export async function paintMask(imageUrl, { title = "" } = {}) {
  const img = await loadImage(imageUrl)
  const { naturalWidth: width, naturalHeight: height } = img
  const scale = Math.min(1, (window.innerWidth * 0.8) / width, (window.innerHeight * 0.7) / height)
  const shown = { width: Math.round(width * scale), height: Math.round(height * scale) }

  const picture = el("canvas", { width, height, className: "mask-picture" })
  const mask = el("canvas", { width, height, className: "mask-layer", id: "mask-layer" })
  for (const c of [picture, mask]) Object.assign(c.style, { width: `${shown.width}px`, height: `${shown.height}px` })
  const pictureCtx = picture.getContext("2d", { willReadFrequently: true })
  pictureCtx.drawImage(img, 0, 0)
  const maskCtx = mask.getContext("2d", { willReadFrequently: true })
  startFromAlpha(pictureCtx, maskCtx, width, height)

  const brush = el("input", { type: "range", id: "mask-brush", min: 1, max: Math.max(8, Math.round(Math.max(width, height) / 2)),
    value: Math.max(4, Math.round(Math.max(width, height) / 12)) })
  const brushLabel = el("span", { className: "mask-brush-size" })
  const showBrush = () => { brushLabel.textContent = `${brush.value} px` }
  brush.addEventListener("input", showBrush)
  showBrush()
  const paint = el("button", { id: "mask-paint", textContent: "paint", className: "on", title: "Paint the area to repaint (P)" })
  const erase = el("button", { id: "mask-erase", textContent: "erase", title: "Erase from the mask (E)" })
  let erasing = false
  const setMode = (toErase) => {
    erasing = toErase
    paint.classList.toggle("on", !erasing)
    erase.classList.toggle("on", erasing)
  }
  paint.onclick = () => setMode(false)
  erase.onclick = () => setMode(true)
  const clear = el("button", { id: "mask-clear", textContent: "clear", onclick: () => maskCtx.clearRect(0, 0, width, height) })
  const invert = el("button", { id: "mask-invert", textContent: "invert", onclick: () => invertMask(maskCtx, width, height) })
  const cancel = el("button", { id: "mask-cancel", textContent: "cancel" })
  const save = el("button", { id: "mask-save", textContent: "save mask", className: "primary" })

  const stage = el("div", { className: "mask-stage" }, picture, mask)
  Object.assign(stage.style, { width: `${shown.width}px`, height: `${shown.height}px` })
  const dialog = el("div", { id: "mask-painter", className: "mask-painter", role: "dialog" },
    el("div", { className: "mask-tools" },
      el("strong", { textContent: `Mask${title ? ` · ${title}` : ""}` }), paint, erase,
      el("label", { textContent: "brush " }, brush, brushLabel), clear, invert,
      el("span", { className: "spacer" }), cancel, save),
    stage,
    el("p", { className: "mask-help", textContent: "Painted pixels are repainted by the sampler (LoadImage's MASK = 1 - alpha)." }))
  const backdrop = el("div", { className: "mask-backdrop" }, dialog)
  document.body.append(backdrop)

  // Strokes: round lines between pointer positions, in the image's pixels.
  let last = null
  const at = (e) => {
    const r = mask.getBoundingClientRect()
    return [(e.clientX - r.left) * (width / r.width), (e.clientY - r.top) * (height / r.height)]
  }
  const stroke = (from, to) => {
    maskCtx.save()
    maskCtx.globalCompositeOperation = erasing ? "destination-out" : "source-over"
    maskCtx.strokeStyle = maskCtx.fillStyle = MASK_COLOUR
    maskCtx.lineWidth = Number(brush.value)
    maskCtx.lineCap = maskCtx.lineJoin = "round"
    maskCtx.beginPath()
    if (from[0] === to[0] && from[1] === to[1]) {  // a click: a dot (a zero-length line draws nothing)
      maskCtx.arc(from[0], from[1], maskCtx.lineWidth / 2, 0, 2 * Math.PI)
      maskCtx.fill()
    } else {
      maskCtx.moveTo(...from)
      maskCtx.lineTo(...to)
      maskCtx.stroke()
    }
    maskCtx.restore()
  }
  mask.addEventListener("pointerdown", (e) => {
    mask.setPointerCapture(e.pointerId)
    last = at(e)
    stroke(last, last)
  })
  mask.addEventListener("pointermove", (e) => {
    if (!last) return
    const point = at(e)
    stroke(last, point)
    last = point
  })
  const end = () => { last = null }
  mask.addEventListener("pointerup", end)
  mask.addEventListener("pointercancel", end)

  return new Promise((resolve) => {
    const close = (result) => {
      document.removeEventListener("keydown", keys, true)
      backdrop.remove()
      resolve(result)
    }
    const keys = (e) => {
      if (e.key === "Escape") close(null)
      else if (e.key === "p" || e.key === "P") setMode(false)
      else if (e.key === "e" || e.key === "E") setMode(true)
      else return
      e.stopPropagation()
      e.preventDefault()
    }
    document.addEventListener("keydown", keys, true)
    cancel.onclick = () => close(null)
    save.onclick = () => close(maskBlob(maskCtx, width, height))
  })
}

/** Pixels the image already leaves transparent start out painted. */
function startFromAlpha(pictureCtx, maskCtx, width, height) {
  const source = pictureCtx.getImageData(0, 0, width, height).data
  const out = maskCtx.createImageData(width, height)
  let any = false
  for (let i = 3; i < source.length; i += 4) {
    if (source[i] < 255) {
      out.data.set([255, 40, 80, 255 - source[i]], i - 3)
      any = true
    }
  }
  if (any) maskCtx.putImageData(out, 0, 0)
}

function invertMask(maskCtx, width, height) {
  const data = maskCtx.getImageData(0, 0, width, height)
  for (let i = 0; i < data.data.length; i += 4) {
    data.data.set([255, 40, 80, 255 - data.data[i + 3]], i)
  }
  maskCtx.putImageData(data, 0, 0)
}

/** The mask as a PNG whose alpha is 255 - the painted coverage (black pixels). */
function maskBlob(maskCtx, width, height) {
  const painted = maskCtx.getImageData(0, 0, width, height).data
  const canvas = el("canvas", { width, height })
  const ctx = canvas.getContext("2d")
  const out = ctx.createImageData(width, height)
  for (let i = 0; i < painted.length; i += 4) out.data[i + 3] = 255 - painted[i + 3]
  ctx.putImageData(out, 0, 0)
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"))
}
