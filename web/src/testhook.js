// window.lcmgraph: read-only geometry and state for browser tests and for
// scripting the editor from the devtools console. Tests read positions here
// and then act with real mouse events; nothing here edits the graph except
// load(), which is the same path as opening a file.

import { LiteGraph } from "@comfyorg/litegraph"

import { linkCompatible } from "./types.js"
import { isNodeId } from "./workflow.js"

export function installTestHook(app) {
  const toPage = (gx, gy) => {
    const rect = app.canvas.canvas.getBoundingClientRect()
    const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([gx, gy])
    return { x: rect.left + cx, y: rect.top + cy }
  }
  const node = (id) => {
    const n = app.nodeById(id)
    if (!n) throw new Error(`no node ${id}`)
    return n
  }
  window.lcmgraph = {
    app,
    get ready() { return document.body.dataset.ready === "1" },
    get events() { return app.runner.events },
    get jobs() { return [...app.runner.jobs.values()] },
    workflow: () => app.workflow(),
    linkCompatible,
    isNodeId,
    load: (doc) => { app.load(doc); return app.workflow() },
    nodeIds: () => app.graph._nodes.map((n) => n.properties?.id),
    nodes: () => app.graph._nodes.map((n) => ({
      id: n.properties?.id,
      type: n.type,
      title: n.title,
      problems: n.lcm?.problems ?? [],
      hasErrors: !!n.has_errors,
      running: !!n.lcm?.running,
      progress: n.progress ?? null,
      hasPreview: !!n.lcm?.preview,
      images: n.lcm?.images?.map((im) => im.url) ?? [],
      loadedImages: n.lcm?.images?.filter((im) => im.img.complete && im.img.naturalWidth > 0).length ?? 0,
    })),
    /** Page coordinates of a node's title bar (a point to grab it by). */
    titlePos: (id) => {
      const n = node(id)
      return toPage(n.pos[0] + n.size[0] / 2, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT / 2)
    },
    /** Page coordinates of an input or output socket. */
    slotPos: (id, kind, name) => {
      const n = node(id)
      const slots = kind === "input" ? n.inputs : n.outputs
      const index = slots.findIndex((s) => s.name === name)
      if (index < 0) throw new Error(`node ${id} has no ${kind} ${name}`)
      // Widget inputs' sockets are laid out next to their widget on draw.
      n.arrange()
      const [gx, gy] = n.getConnectionPos(kind === "input", index)
      return toPage(gx, gy)
    },
    /** Page rectangle of a widget, and the points of its -/+ arrows. */
    widgetRect: (id, name) => {
      const n = node(id)
      n.arrange()
      const w = n.widgets.find((x) => x.name === name)
      if (!w) throw new Error(`node ${id} has no widget ${name}`)
      const h = w.computedHeight ? w.computedHeight - 4 : LiteGraph.NODE_WIDGET_HEIGHT
      const topLeft = toPage(n.pos[0] + 15, n.pos[1] + w.y)
      const bottomRight = toPage(n.pos[0] + n.size[0] - 15, n.pos[1] + w.y + h)
      const mid = (topLeft.y + bottomRight.y) / 2
      return {
        x: topLeft.x, y: topLeft.y, width: bottomRight.x - topLeft.x, height: bottomRight.y - topLeft.y,
        center: { x: (topLeft.x + bottomRight.x) / 2, y: mid },
        decrement: toPage(n.pos[0] + 25, n.pos[1] + w.y + h / 2),
        increment: toPage(n.pos[0] + n.size[0] - 25, n.pos[1] + w.y + h / 2),
      }
    },
    widgetValue: (id, name) => node(id).widgets.find((x) => x.name === name)?.value,
    links: () => {
      const out = []
      for (const n of app.graph._nodes) {
        for (const slot of n.inputs ?? []) {
          if (slot.link == null) continue
          const link = app.graph._links.get(slot.link)
          const origin = link && app.graph.getNodeById(link.origin_id)
          if (origin) out.push([origin.properties.id, origin.outputs[link.origin_slot].name, n.properties.id, slot.name])
        }
      }
      return out
    },
    /** Pan so that graph point (0, 0) is at the canvas's top-left, at scale 1. */
    resetView: () => {
      app.canvas.ds.offset[0] = 0
      app.canvas.ds.offset[1] = 0
      app.canvas.ds.scale = 1
      app.redraw()
    },
  }
}
