// The lcmgraph editor: a litegraph canvas whose node types, widgets and
// model-file choices all come from the server (GET /api/nodes, /api/models).

import "@comfyorg/litegraph/style.css"
import "./style.css"

import { CanvasPointer, LGraph, LGraphCanvas, LiteGraph } from "@comfyorg/litegraph"

import { Api, ApiError } from "./api.js"
import { maskName, paintMask } from "./maskpainter.js"
import { setNodeImages, registerSchema } from "./nodes.js"
import { Palette } from "./palette.js"
import { Runner } from "./runner.js"
import { installTestHook } from "./testhook.js"
import { linkCompatible } from "./types.js"
import { setWidgetValue } from "./widgets.js"
import { fitView, graphToWorkflow, idBase, isNodeId, setNodeIdPattern, uniqueId, usedIds, workflowToGraph } from "./workflow.js"

const DEFAULT_WORKFLOW = "txt2img_lcm"
const AUTOSAVE_KEY = "lcmgraph.workflow"
const $ = (sel) => document.querySelector(sel)

class App {
  constructor() {
    const params = new URLSearchParams(location.search)
    const token = params.get("token") || sessionStorage.getItem("lcmgraph.token")
    if (token) sessionStorage.setItem("lcmgraph.token", token)
    this.api = new Api({ token })
    this.schema = null
    this.files = {} // folder -> [names]
    this.base = {} // the document last loaded (meta, outputs, ui extras are kept)
    this.loading = false
    this._autosaveTimer = null
  }

  // -- setup ------------------------------------------------------------------

  async start() {
    LiteGraph.isValidConnection = (outputType, inputType) => linkCompatible(outputType, inputType)
    LiteGraph.release_link_on_empty_shows_menu = true
    LiteGraph.alt_drag_do_clone_nodes = true
    LiteGraph.middle_click_slot_add_default_node = true
    LiteGraph.snaps_for_comfy = true
    CanvasPointer.doubleClickTime = 500 // the usual desktop double-click time (litegraph: 300 ms)

    this.graph = new LGraph()
    const el = $("#graph")
    this.canvas = new LGraphCanvas(el, this.graph)
    this.canvas.show_info = false
    this.canvas.render_canvas_border = false
    this.canvas.low_quality_zoom_threshold = 0.45 // keep text readable when a whole graph is fitted
    this.canvas.allow_searchbox = true
    this.fitCanvas()
    new ResizeObserver(() => this.fitCanvas()).observe(el.parentElement)

    this.graph.onNodeAdded = (node) => this.nodeAdded(node)
    this.graph.onNodeRemoved = () => this.changed()

    this.runner = new Runner(this)
    let connectedBefore = false
    this.api.onStatus((up) => {
      $("#connection").textContent = up ? "connected" : "reconnecting…"
      $("#connection").className = up ? "ok" : "error"
      if (up && connectedBefore) this.runner.catchUp()
      connectedBefore ||= up
    })
    this.api.connect()

    const [schema, models] = await Promise.all([this.api.nodes(), this.api.models().catch(() => ({ folders: {} }))])
    this.files = models.folders ?? {}
    this.schema = schema
    setNodeIdPattern(schema.node_id_pattern)
    registerSchema(schema, this.widgetEnv()) // and the link rules (schema.link_rules)
    this.palette = new Palette(this, $("#palette"))
    this.palette.render(schema)
    this.bindToolbar()
    this.bindDrops()
    installTestHook(this)
    this.loadExamplesMenu()
    await this.loadInitial()
    document.body.dataset.ready = "1"
  }

  fitCanvas() {
    const el = this.canvas.canvas
    const { width, height } = el.parentElement.getBoundingClientRect()
    const dpr = Math.max(window.devicePixelRatio || 1, 1)
    el.style.width = `${width}px`
    el.style.height = `${height}px`
    el.width = Math.round(width * dpr)
    el.height = Math.round(height * dpr)
    el.getContext("2d").setTransform(dpr, 0, 0, dpr, 0, 0)
    this.canvas.setDirty(true, true)
    this.canvas.draw(true, true)
  }

  widgetEnv() {
    return {
      files: (folder) => this.files[folder] ?? [],
      changed: (node, name, value) => this.widgetChanged(node, name, value),
      touched: () => {},
      connectionsChanged: () => this.changed(),
      upload: (node, widget) => this.pickUpload(node, widget),
      paintMask: (node, widget) => this.paintMaskInto(node, widget),
      renameNode: (node) => this.renameNode(node),
    }
  }

  async refreshModels() {
    try {
      this.files = (await this.api.models()).folders ?? {}
    } catch (err) {
      console.warn("lcmgraph: model listing failed", err)
    }
  }

  // -- graph bookkeeping ------------------------------------------------------

  nodeAdded(node) {
    if (!node.lcm) return
    // Creation order, kept for saving: selecting a node moves it to the end of litegraph's list.
    this._seq = (this._seq ?? 0) + 1
    node.lcmSeq = this._seq
    const id = node.properties.id
    // New nodes (palette, search box, paste, alt-drag clone) get a fresh, unique id.
    if (!id || usedIds(this.graph, node).has(id)) node.properties.id = uniqueId(this.graph, idBase(node.type), node)
    if (!this.loading) this.changed()
  }

  nodeById(id) {
    return this.graph._nodes.find((n) => n.properties?.id === id) ?? null
  }

  widgetChanged(node, name) {
    // A literal kept verbatim from the file (one the widget could not hold) gives way to the edit.
    if (node.lcmExtraInputs && name in node.lcmExtraInputs) delete node.lcmExtraInputs[name]
    if (node.lcm?.problems.length) {
      node.lcm.problems = node.lcm.problems.filter((p) => p.input !== name)
      node.has_errors = node.lcm.problems.length > 0
    }
    if (node.type === "LoadImage" || node.lcmSpec?.inputs.some((i) => i.name === name && i.folder === "input")) {
      this.showInputImage(node)
    }
    this.changed()
  }

  /** Any user edit: autosave, and in live mode re-queue. */
  changed() {
    if (this.loading) return
    clearTimeout(this._autosaveTimer)
    this._autosaveTimer = setTimeout(() => this.autosave(), 400)
    this.runner?.edited()
  }

  autosave() {
    try {
      localStorage.setItem(AUTOSAVE_KEY, JSON.stringify(this.workflow()))
    } catch (err) {
      console.warn("lcmgraph: autosave failed", err)
    }
  }

  workflow() {
    return graphToWorkflow(this.graph, this.canvas, this.base)
  }

  load(doc, { source = "workflow" } = {}) {
    this.loading = true
    let report
    try {
      report = workflowToGraph(doc, this.graph, this.canvas, { loaded: () => {} })
    } finally {
      this.loading = false
    }
    this.base = structuredClone(doc)
    delete this.base.nodes
    this.base.nodes = Object.fromEntries(Object.keys(doc.nodes).map((k) => [k, true]))
    for (const node of this.graph._nodes) if (node.lcm) this.showInputImage(node)
    this.runner.clearProblems()
    this.redraw()
    const title = doc.meta?.title ? `“${doc.meta.title}”` : source
    const notes = report.notes.length ? ` — ${report.notes.join("; ")}` : ""
    this.status(`loaded ${title}${notes}`, report.notes.length ? "error" : "ok")
    $("#title").textContent = doc.meta?.title ?? ""
    this.autosave()
    this.runner.edited()
    return report
  }

  async loadInitial() {
    const saved = localStorage.getItem(AUTOSAVE_KEY)
    if (saved) {
      try {
        this.load(JSON.parse(saved), { source: "the last session" })
        return
      } catch (err) {
        console.warn("lcmgraph: could not restore the last session", err)
      }
    }
    await this.loadDefault()
  }

  async loadDefault() {
    try {
      this.load(await this.api.workflow(DEFAULT_WORKFLOW), { source: DEFAULT_WORKFLOW })
    } catch (err) {
      this.status(`no default workflow (${err.message}); start from the palette`, "error")
    }
  }

  /** Draw now: litegraph hit-tests pointer events against the nodes it last drew. */
  redraw() {
    this.canvas.setDirty(true, true)
    this.canvas.draw(true, true)
  }

  clear() {
    this.loading = true
    this.graph.clear()
    this.loading = false
    this.redraw()
    this.base = {}
    $("#title").textContent = ""
    this.runner.clearProblems()
    this.changed()
    this.status("empty canvas: drag nodes from the palette, or double-click the canvas to search")
  }

  addNode(type, graphPos) {
    const node = LiteGraph.createNode(type)
    if (!node) return null
    if (!graphPos) {
      const rect = this.canvas.canvas.getBoundingClientRect()
      graphPos = this.canvas.ds.convertCanvasToOffset([rect.width / 2, rect.height / 2])
      graphPos = [graphPos[0] - node.size[0] / 2, graphPos[1] - node.size[1] / 2]
    }
    node.pos = [graphPos[0], graphPos[1]]
    this.graph.add(node)
    this.canvas.selectNode(node)
    this.redraw()
    return node
  }

  renameNode(node) {
    const current = node.properties.id
    const next = window.prompt("Node id (letters, digits, _ . : -)", current)
    if (next == null || next === current) return
    if (!isNodeId(next)) { this.status(`"${next}" is not a valid node id`, "error"); return }
    if (usedIds(this.graph, node).has(next)) { this.status(`another node is already called "${next}"`, "error"); return }
    node.properties.id = next
    this.canvas.setDirty(true, true)
    this.changed()
  }

  // -- images -----------------------------------------------------------------

  showInputImage(node) {
    const widget = node.widgets?.find((w) => w.folder === "input")
    if (!widget) return
    const name = widget.value
    if (name && !String(name).startsWith("builtin:")) {
      const url = `/api/files/input/${String(name).split("/").map(encodeURIComponent).join("/")}?thumbnail=256`
      setNodeImages(node, [this.api.fileUrl(url)])
    } else {
      setNodeImages(node, [])
    }
  }

  pickUpload(node, widget) {
    const input = document.createElement("input")
    input.type = "file"
    input.accept = "image/png,image/jpeg,image/webp,image/gif,image/bmp"
    input.addEventListener("change", () => {
      if (input.files?.[0]) this.uploadInto(node, widget, input.files[0])
    })
    input.click()
  }

  async paintMaskInto(node, widget) {
    const name = widget.value
    if (!name || !(this.files.input ?? []).includes(name)) {
      this.status(`paint mask: upload an image into ${widget.name} first (${name || "none chosen"} is not in the input folder)`, "error")
      return
    }
    const url = `/api/files/input/${String(name).split("/").map(encodeURIComponent).join("/")}`
    try {
      const blob = await paintMask(this.api.fileUrl(url), { title: name })
      if (!blob) return
      const body = await this.api.uploadMask(await blob, maskName(name), name)
      await this.refreshModels()
      setWidgetValue(widget, body.name)
      this.widgetChanged(node, widget.name, body.name)
      this.status(`mask saved as ${body.name}: painted pixels are transparent (LoadImage's MASK = 1 - alpha)`, "ok")
    } catch (err) {
      this.status(`paint mask failed: ${err.message}`, "error")
    }
  }

  async uploadInto(node, widget, file) {
    this.status(`uploading ${file.name}…`)
    try {
      const body = await this.api.upload(file)
      await this.refreshModels()
      setWidgetValue(widget, body.name)
      this.widgetChanged(node, widget.name, body.name)
      this.status(`uploaded ${body.name} (${body.width}×${body.height})`, "ok")
    } catch (err) {
      this.status(`upload failed: ${err.message}`, "error")
    }
  }

  showOutputs(jobId, nodeId, images) {
    if (!images.length) return
    const panel = $("#outputs")
    panel.querySelector(".empty")?.remove()
    for (const im of images) {
      const a = document.createElement("a")
      a.href = this.api.fileUrl(im.url)
      a.target = "_blank"
      a.className = "output"
      a.title = `${nodeId} · job ${jobId} · ${im.filename ?? im.name}`
      const img = document.createElement("img")
      img.src = this.api.fileUrl(im.thumbnail ?? im.url)
      img.alt = im.filename ?? "output image"
      img.dataset.job = jobId
      img.dataset.node = nodeId
      a.append(img)
      panel.prepend(a)
    }
    while (panel.children.length > 60) panel.lastElementChild.remove()
  }

  /** The side panel's "now running" box: node, step, and the sampler's preview. */
  showProgress(info) {
    const box = $("#progress")
    if (!info) { box.hidden = true; this._progressNode = null; return }
    box.hidden = false
    if (info.node !== this._progressNode) {
      this._progressNode = info.node
      $("#progress-preview").hidden = true
    }
    const label = info.step != null ? `${info.node}: step ${info.step}/${info.total}` : `${info.node} (node ${info.index + 1} of ${info.total})`
    $("#progress-label").textContent = label
    $("#progress-bar").value = info.step != null && info.total ? info.step / info.total : 0
    if (info.preview) {
      const img = $("#progress-preview")
      img.src = info.preview
      img.hidden = false
    }
  }

  // -- status line --------------------------------------------------------------

  status(text, kind = "") {
    const el = $("#status")
    el.textContent = text
    el.className = kind
  }

  setProblems(lines) {
    const el = $("#problems")
    el.replaceChildren(...lines.map((line) => Object.assign(document.createElement("li"), { textContent: line })))
    el.hidden = !lines.length
  }

  queueInfo(q) {
    const running = q.running?.length ?? 0
    $("#queue-info").textContent = `queue: ${running ? "running, " : ""}${q.queued ?? 0} waiting`
    this.refreshWorkers()
  }

  /** On a cluster (`serve --ray`): how many workers, how many busy, and per worker (tooltip)
   *  its health, device and models. At most one request a second, on queue changes. */
  async refreshWorkers() {
    const now = Date.now()
    if (this.workersAsked && now - this.workersAsked < 1000) return
    this.workersAsked = now
    const el = $("#workers-info")
    let body
    try {
      body = await this.api.get("/api/workers")
    } catch {
      return  // an older server, or a user who may not see it: nothing to show
    }
    if (!body.cluster) { el.hidden = true; return }
    const workers = body.workers ?? []
    const busy = workers.filter((w) => (Array.isArray(w.running) ? w.running.length : w.running) > 0).length
    const unwell = workers.filter((w) => w.health !== "ok").length
    el.textContent = `workers: ${workers.length}${busy ? `, ${busy} busy` : ""}${unwell ? `, ${unwell} not ok` : ""}`
    el.classList.toggle("error", unwell > 0)
    el.title = workers.map((w) => `${w.name}: ${w.health} · ${w.device ?? "?"} · ` +
      `${(w.models ?? []).length ? w.models.join(", ") : "no model loaded"}`).join("\n")
    el.hidden = false
  }

  // -- toolbar, files, drops ---------------------------------------------------

  bindToolbar() {
    $("#queue").addEventListener("click", () => this.runner.queue())
    $("#interrupt").addEventListener("click", () => this.runner.interruptAll())
    $("#live").addEventListener("change", (e) => this.runner.setLive(e.target.checked))
    $("#save").addEventListener("click", () => this.save())
    $("#load").addEventListener("click", () => $("#load-file").click())
    $("#load-file").addEventListener("change", async (e) => {
      const file = e.target.files?.[0]
      e.target.value = ""
      if (file) await this.openFile(file)
    })
    $("#clear").addEventListener("click", () => this.clear())
    $("#fit").addEventListener("click", () => { fitView(this.graph, this.canvas); this.redraw() })
    $("#examples").addEventListener("change", async (e) => {
      const name = e.target.value
      e.target.value = ""
      if (!name) return
      try {
        this.load(await this.api.workflow(name), { source: name })
      } catch (err) {
        this.status(`could not load ${name}: ${err.message}`, "error")
      }
    })
    // Files may have been added to the model folders meanwhile: list them again on return.
    window.addEventListener("focus", () => this.refreshModels())
    window.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); this.runner.queue() }
      if ((e.ctrlKey || e.metaKey) && e.key === "s") { e.preventDefault(); this.save() }
    })
  }

  async loadExamplesMenu() {
    try {
      const { workflows } = await this.api.workflows()
      const select = $("#examples")
      for (const wf of workflows) {
        if (wf.error) continue
        const option = document.createElement("option")
        option.value = wf.name
        option.textContent = wf.title ? `${wf.title}` : wf.name
        option.title = wf.description ?? ""
        select.append(option)
      }
    } catch (err) {
      console.warn("lcmgraph: no example workflows", err)
    }
  }

  save() {
    const doc = this.workflow()
    const text = JSON.stringify(doc, null, 2) + "\n"
    const name = (doc.meta?.title ?? "workflow").replace(/[^A-Za-z0-9_.-]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 60) || "workflow"
    const a = document.createElement("a")
    a.href = URL.createObjectURL(new Blob([text], { type: "application/json" }))
    a.download = `${name}.json`
    document.body.append(a)
    a.click()
    a.remove()
    setTimeout(() => URL.revokeObjectURL(a.href), 1000)
    this.status(`saved ${a.download}`, "ok")
    return doc
  }

  /**
   * Load a workflow .json, or an image with an embedded workflow: lcmgraph's own, or a
   * ComfyUI one (the server reads the image and converts). Returns true when a workflow was loaded.
   */
  async openFile(file) {
    try {
      const bytes = new Uint8Array(await file.arrayBuffer())
      if (!looksLikeJson(bytes)) return await this.openImage(file)
      return await this.openDocument(JSON.parse(new TextDecoder().decode(bytes)), file.name)
    } catch (err) {
      this.status(`${file.name}: ${err.message}`, "error")
      return false
    }
  }

  /** The server reads the image's embedded workflow (POST /api/workflow/from-image). */
  async openImage(file) {
    let body
    try {
      body = await this.api.workflowFromImage(file, { allowMissing: true })
    } catch (err) {
      if (!(err instanceof ApiError)) throw err
      // The server's message names the image and says what is wrong; drop its "POST /api/...: " prefix
      // and put a conversion's problems (listed one per line) on the status line.
      const [head] = err.message.replace(/^[A-Z]+ \/api\/\S+: /, "").split("\n")
      const problems = err.body?.problems?.map((p) => p.message ?? String(p)).join("; ")
      this.status(problems ? `${head} ${problems}` : head, "error")
      return false
    }
    if (body.from === "lcmgraph") this.load(body.workflow, { source: file.name })
    else this.loadConverted(body, file.name)
    return true
  }

  async openDocument(doc, source) {
    if (isLcmgraphWorkflow(doc)) {
      this.load(doc, { source })
      return true
    }
    // Anything else may be a ComfyUI workflow: the server converts it (docs/comfyui.md).
    let body
    try {
      body = await this.api.post("/api/comfy/import", { workflow: doc, allow_missing: true })
    } catch (err) {
      const problems = err.body?.problems?.map((p) => p.message ?? String(p)).join("; ")
      throw new Error(`not an lcmgraph workflow, and not a ComfyUI workflow the server could convert: ${problems || err.message}`)
    }
    this.loadConverted(body, source)
    return true
  }

  /** A workflow the server converted from ComfyUI's format: {workflow, notes}. */
  loadConverted(body, source) {
    this.load(body.workflow, { source: `${source} (converted from ComfyUI)` })
    const notes = Array.isArray(body.notes) ? body.notes.map(String) : []
    const more = notes.length > 1 ? ` (and ${notes.length - 1} more notes in meta.comfy_import)` : ""
    this.status(`converted ${source} from ComfyUI${notes.length ? `: ${notes[0]}${more}` : ""}`, "ok")
  }

  bindDrops() {
    const area = $("#canvas-area")
    area.addEventListener("dragover", (e) => {
      if (e.dataTransfer?.types?.includes("Files")) {
        e.preventDefault()
        e.dataTransfer.dropEffect = "copy"
        area.classList.add("drop-target")
      }
    }, true)
    area.addEventListener("dragleave", () => area.classList.remove("drop-target"))
    area.addEventListener("drop", async (e) => {
      area.classList.remove("drop-target")
      const file = e.dataTransfer?.files?.[0]
      if (!file) return
      e.preventDefault()
      e.stopPropagation()
      // An image dropped on a node with an image input goes into that node...
      this.canvas.adjustMouseEvent(e)
      const target = this.graph.getNodeOnPos(e.canvasX, e.canvasY)
      const imageWidget = target?.widgets?.find((w) => w.folder === "input")
      if (imageWidget && file.type.startsWith("image/")) {
        await this.uploadInto(target, imageWidget, file)
        return
      }
      // ...anything else is a workflow (JSON, or a PNG lcmgraph or ComfyUI made).
      await this.openFile(file)
    }, true)
  }
}

/** Whether a file's bytes start like JSON text (else it is sent to the server as an image). */
function looksLikeJson(bytes) {
  let i = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0 // a UTF-8 BOM
  while (i < bytes.length && [0x20, 0x09, 0x0a, 0x0d].includes(bytes[i])) i++
  return bytes[i] === 0x7b || bytes[i] === 0x5b // "{" or "["
}

/** lcmgraph's format: "nodes" maps ids to {type, inputs} (ComfyUI's is a list, or uses class_type). */
function isLcmgraphWorkflow(doc) {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) return false
  if (doc.format !== undefined) return true // a wrong format/version is reported by load()
  const nodes = doc.nodes
  return !!nodes && typeof nodes === "object" && !Array.isArray(nodes) &&
    Object.values(nodes).every((n) => n && typeof n === "object" && "type" in n && !("class_type" in n))
}

const app = new App()
window.lcmgraphApp = app
app.start().catch((err) => {
  console.error(err)
  const el = document.querySelector("#status")
  el.textContent = `the editor could not start: ${err.message}`
  el.className = "error"
})
