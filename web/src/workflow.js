// The canvas graph <-> workflow format v1 (lcmgraph/workflow.py): the editor
// saves exactly what `lcmgraph run` reads; its layout goes in the "ui" section.

import { LGraphGroup, LiteGraph } from "@comfyorg/litegraph"

import { MissingNode, ensureMissingOutput } from "./nodes.js"
import { setWidgetValue } from "./widgets.js"

export const FORMAT = "lcmgraph.workflow"
export const VERSION = 1
let nodeIdRegExp = null

/** Take the node-id rule from the node schema's "node_id_pattern" (the engine's NODE_ID_PATTERN). */
export function setNodeIdPattern(source) {
  if (typeof source !== "string" || !source) throw new Error("the server's node schema has no \"node_id_pattern\" (an older server?)")
  nodeIdRegExp = new RegExp(source)
}

/** Whether `id` is a node id the engine accepts. */
export function isNodeId(id) {
  if (!nodeIdRegExp) throw new Error("the node-id rule is not loaded yet (it comes with the node schema)")
  return typeof id === "string" && nodeIdRegExp.test(id)
}

const isLink = (v) => v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 1 &&
  Array.isArray(v.link) && v.link.length === 2 && v.link.every((x) => typeof x === "string" && x)
const round = (x) => Math.round(x * 10) / 10

/** Whether a literal can live in the widget of this input; anything else is kept verbatim. */
function fitsWidget(spec, value) {
  switch (spec.type) {
    case "INT": return Number.isSafeInteger(value)
    case "FLOAT": return typeof value === "number" && Number.isFinite(value)
    case "BOOLEAN": return typeof value === "boolean"
    case "STRING":
    case "ENUM": return typeof value === "string"
    default: return value === null || ["string", "number", "boolean"].includes(typeof value)
  }
}

/** "LCMSampler" -> "lcm_sampler", "VAEDecode" -> "vae_decode". */
export function idBase(type) {
  const snake = String(type)
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .toLowerCase()
    .replace(/[^a-z0-9_.:-]+/g, "_")
    .replace(/^[^a-z0-9_]+/, "")
  return (snake || "node").slice(0, 56)
}

export function usedIds(graph, except = null) {
  const ids = new Set()
  for (const node of graph._nodes) if (node !== except && node.properties?.id) ids.add(node.properties.id)
  return ids
}

export function uniqueId(graph, base, except = null) {
  const used = usedIds(graph, except)
  if (!used.has(base)) return base
  for (let i = 2; ; i++) if (!used.has(`${base}_${i}`)) return `${base}_${i}`
}

function linkOf(graph, slot) {
  if (slot?.link == null) return null
  const link = graph._links?.get?.(slot.link) ?? graph.links?.[slot.link]
  if (!link) return null
  const origin = graph.getNodeById(link.origin_id)
  const output = origin?.outputs?.[link.origin_slot]
  if (!origin || !output) return null
  return { link: [origin.properties.id, output.name] }
}

function literal(value) {
  return value && typeof value === "object" && !Array.isArray(value) ? { value } : value
}

/**
 * The graph as a workflow document. `base` is the document last loaded (its
 * meta, outputs and unknown ui keys are kept).
 */
export function graphToWorkflow(graph, canvas, base = {}) {
  const doc = { format: FORMAT, version: VERSION }
  if (base.meta && typeof base.meta === "object") doc.meta = structuredClone(base.meta)
  const nodes = {}
  const uiNodes = {}
  const outputNodes = []
  const ordered = [...graph._nodes].sort((a, b) => (a.lcmSeq ?? Infinity) - (b.lcmSeq ?? Infinity))
  for (const node of ordered) {
    const id = node.properties?.id
    if (!id) continue
    const inputs = {}
    const extra = node.lcmExtraInputs ?? {}
    if (node.lcmMissing) {
      Object.assign(inputs, structuredClone(node.lcmMissing.rawInputs))
      for (const slot of node.inputs ?? []) {
        const link = linkOf(graph, slot)
        if (link) inputs[slot.name] = link
        else if (isLink(inputs[slot.name])) delete inputs[slot.name]
      }
    } else {
      for (const spec of node.lcmSpec.inputs) {
        const slot = node.inputs?.find((s) => s.name === spec.name)
        const link = linkOf(graph, slot)
        if (link) {
          inputs[spec.name] = link
        } else if (spec.name in extra) {
          inputs[spec.name] = structuredClone(extra[spec.name])
        } else if (spec.widget) {
          const widget = node.widgets?.find((w) => w.name === spec.name)
          if (widget) inputs[spec.name] = literal(widget.value)
        }
      }
      // Inputs the node type does not declare: kept as they were (validation names them).
      for (const [name, value] of Object.entries(extra)) if (!(name in inputs)) inputs[name] = structuredClone(value)
      if (node.lcmSpec.output_node) outputNodes.push(id)
    }
    const entry = { type: node.lcmMissing?.type ?? node.type, inputs }
    const defaultTitle = node.constructor.title
    if (!node.lcmMissing && node.title && node.title !== defaultTitle) entry.title = node.title
    else if (node.lcmMissing?.title) entry.title = node.lcmMissing.title
    nodes[id] = entry
    const ui = { pos: [round(node.pos[0]), round(node.pos[1])], size: [round(node.size[0]), round(node.size[1])] }
    if (node.flags?.collapsed) ui.collapsed = true
    if (node.lcmColor) ui.color = node.lcmColor
    uiNodes[id] = ui
  }
  doc.nodes = nodes
  if (Array.isArray(base.outputs)) {
    // Keep the loaded list (minus deleted nodes), plus output nodes added since.
    const known = new Set(Object.keys(base.nodes ?? {}))
    const outputs = base.outputs.filter((id) => id in nodes)
    for (const id of outputNodes) if (!known.has(id) && !outputs.includes(id)) outputs.push(id)
    if (outputs.length) doc.outputs = outputs
  }
  const ui = {}
  if (base.ui && typeof base.ui === "object") {
    for (const [k, v] of Object.entries(base.ui)) if (!["nodes", "groups", "view"].includes(k)) ui[k] = structuredClone(v)
  }
  ui.nodes = uiNodes
  const groups = (graph._groups ?? []).map((g) => ({
    title: g.title,
    bounding: Array.from(g._bounding, round),
  }))
  if (groups.length) ui.groups = groups
  if (canvas) ui.view = { offset: canvas.ds.offset.map(round), scale: Math.round(canvas.ds.scale * 1000) / 1000 }
  doc.ui = ui
  return doc
}

/** Columns by longest path from a source: a readable layout for documents without positions. */
function layoutColumns(doc) {
  const nodes = doc.nodes
  const depth = {}
  const visiting = new Set()
  const deps = (id) => Object.values(nodes[id]?.inputs ?? {}).filter(isLink).map((l) => l.link[0]).filter((d) => d in nodes)
  const depthOf = (id) => {
    if (id in depth) return depth[id]
    if (visiting.has(id)) return 0 // a cycle: validation reports it
    visiting.add(id)
    const d = Math.max(-1, ...deps(id).map(depthOf)) + 1
    visiting.delete(id)
    depth[id] = d
    return d
  }
  const columns = {}
  for (const id of Object.keys(nodes)) columns[id] = depthOf(id)
  return columns
}

/** Place nodes that have no position: columns by depth, stacked by their real heights. */
function placeNodes(byId, columns) {
  const widths = {}
  for (const [id, node] of Object.entries(byId)) {
    const d = columns[id]
    widths[d] = Math.max(widths[d] ?? 0, node.size[0])
  }
  const xs = {}
  let x = 40
  for (const d of Object.keys(widths).map(Number).sort((a, b) => a - b)) {
    xs[d] = x
    x += widths[d] + 60
  }
  const ys = {}
  for (const [id, node] of Object.entries(byId)) {
    const d = columns[id]
    const y = ys[d] ?? 60
    node.pos = [xs[d], y]
    ys[d] = y + node.size[1] + LiteGraph.NODE_TITLE_HEIGHT + 30
  }
}

/** Problems found while loading (links to nothing, unknown types), for the status line. */
export class LoadReport {
  constructor() { this.notes = [] }
  add(message) { this.notes.push(message) }
}

/**
 * Replace the graph's contents with a workflow document. Throws an Error with
 * a readable message when `doc` is not a workflow at all.
 */
export function workflowToGraph(doc, graph, canvas, env) {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new Error("a workflow must be a JSON object")
  if (doc.format !== undefined && doc.format !== FORMAT) throw new Error(`unknown format ${JSON.stringify(doc.format)}; expected "${FORMAT}"`)
  if (doc.version !== undefined && doc.version !== VERSION) throw new Error(`workflow format version ${doc.version} is not supported (this editor reads ${VERSION})`)
  if (!doc.nodes || typeof doc.nodes !== "object" || Array.isArray(doc.nodes)) throw new Error('"nodes" must be an object mapping node ids to nodes')
  const report = new LoadReport()
  graph.clear()
  const uiNodes = doc.ui?.nodes ?? {}
  const unplaced = {}
  const byId = {}
  const pendingLinks = []
  for (const [id, raw] of Object.entries(doc.nodes)) {
    if (!raw || typeof raw !== "object") { report.add(`node ${id}: not an object; skipped`); continue }
    const type = raw.type
    const inputs = raw.inputs && typeof raw.inputs === "object" ? raw.inputs : {}
    let node = typeof type === "string" ? LiteGraph.createNode(type) : null
    const extra = {}
    if (!node) {
      report.add(`node ${id}: unknown node type ${JSON.stringify(type)}`)
      const linkInputs = Object.entries(inputs).filter(([, v]) => isLink(v)).map(([k]) => k)
      node = new MissingNode(String(type), structuredClone(inputs), linkInputs)
      if (raw.title) node.lcmMissing.title = raw.title
    } else {
      const specs = Object.fromEntries(node.lcmSpec.inputs.map((s) => [s.name, s]))
      for (const [name, value] of Object.entries(inputs)) {
        const spec = specs[name]
        if (isLink(value)) continue
        const widget = spec?.widget && node.widgets?.find((w) => w.name === name)
        if (widget && fitsWidget(spec, value)) {
          setWidgetValue(widget, value)
        } else {
          extra[name] = structuredClone(value)
        }
      }
      if (typeof raw.title === "string" && raw.title) node.title = raw.title
    }
    if (Object.keys(extra).length) node.lcmExtraInputs = extra
    node.properties.id = id
    const ui = uiNodes[id] ?? {}
    if (Array.isArray(ui.pos) && ui.pos.length === 2) node.pos = [Number(ui.pos[0]), Number(ui.pos[1])]
    else unplaced[id] = node
    if (Array.isArray(ui.size) && ui.size.length === 2) node.setSize([Number(ui.size[0]), Number(ui.size[1])])
    if (typeof ui.color === "string") { node.lcmColor = ui.color; node.color = ui.color }
    graph.add(node)
    if (ui.collapsed) node.collapse(true)
    byId[id] = node
    for (const [name, value] of Object.entries(inputs)) if (isLink(value)) pendingLinks.push([node, name, value])
  }
  if (Object.keys(unplaced).length) placeNodes(unplaced, layoutColumns(doc))
  for (const [target, name, value] of pendingLinks) {
    const [fromId, outName] = value.link
    const origin = byId[fromId]
    const keep = () => { (target.lcmExtraInputs ??= {})[name] = structuredClone(value) }
    if (!origin) { report.add(`node ${target.properties.id} input ${name}: link to missing node ${fromId}`); keep(); continue }
    let outIndex = origin.outputs?.findIndex((o) => o.name === outName) ?? -1
    if (outIndex < 0 && origin.lcmMissing) outIndex = ensureMissingOutput(origin, outName)
    const inIndex = target.inputs?.findIndex((s) => s.name === name) ?? -1
    if (outIndex < 0 || inIndex < 0) { keep(); continue }
    const made = origin.connect(outIndex, target, inIndex)
    if (!made) keep()
  }
  if (Array.isArray(doc.ui?.groups)) {
    for (const g of doc.ui.groups) {
      if (!Array.isArray(g?.bounding) || g.bounding.length !== 4) continue
      const group = new LGraphGroup(g.title ?? "Group")
      group._bounding.set(g.bounding.map(Number))
      graph.add(group)
    }
  }
  const view = doc.ui?.view
  if (canvas) {
    if (view && Array.isArray(view.offset) && typeof view.scale === "number") {
      canvas.ds.offset[0] = view.offset[0]
      canvas.ds.offset[1] = view.offset[1]
      canvas.ds.scale = view.scale
    } else {
      fitView(graph, canvas)
    }
    canvas.setDirty(true, true)
  }
  env?.loaded?.(byId)
  return report
}

/** Zoom and pan so the whole graph is visible. */
export function fitView(graph, canvas) {
  if (!graph._nodes.length) return
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity]
  for (const n of graph._nodes) {
    x0 = Math.min(x0, n.pos[0])
    y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT)
    x1 = Math.max(x1, n.pos[0] + n.size[0])
    y1 = Math.max(y1, n.pos[1] + n.size[1])
  }
  const rect = canvas.canvas.getBoundingClientRect()
  const pad = 40
  const scale = Math.min(1, (rect.width - pad * 2) / (x1 - x0), (rect.height - pad * 2) / (y1 - y0))
  canvas.ds.scale = Math.max(0.3, scale)
  canvas.ds.offset[0] = -x0 + (rect.width / canvas.ds.scale - (x1 - x0)) / 2
  canvas.ds.offset[1] = -y0 + (rect.height / canvas.ds.scale - (y1 - y0)) / 2
}

