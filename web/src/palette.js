// The node palette: every node type from the schema, grouped by category,
// filtered by a search box. Drag an entry onto the canvas (or click it, or
// press Enter in the search box) to add the node.

const DRAG_THRESHOLD = 4

export class Palette {
  constructor(app, root) {
    this.app = app
    this.root = root
    this.search = root.querySelector("#palette-search")
    this.list = root.querySelector("#palette-list")
    this.search.addEventListener("input", () => this.filter())
    this.search.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        const first = this.list.querySelector(".palette-item:not([hidden])")
        if (first) this.app.addNode(first.dataset.type)
      } else if (e.key === "Escape") {
        this.search.value = ""
        this.filter()
      }
    })
  }

  render(schema) {
    const byCategory = new Map()
    for (const [type, spec] of Object.entries(schema.nodes)) {
      const cat = spec.category || "other"
      if (!byCategory.has(cat)) byCategory.set(cat, [])
      byCategory.get(cat).push([type, spec])
    }
    const sections = []
    for (const cat of [...byCategory.keys()].sort()) {
      const section = document.createElement("section")
      section.className = "palette-category"
      const h = document.createElement("h3")
      h.textContent = cat
      section.append(h)
      const items = byCategory.get(cat).sort((a, b) => (a[1].display_name || a[0]).localeCompare(b[1].display_name || b[0]))
      for (const [type, spec] of items) section.append(this.item(type, spec))
      sections.push(section)
    }
    this.list.replaceChildren(...sections)
    const broken = (schema.packs ?? []).filter((p) => p.error)
    if (broken.length) {
      const note = document.createElement("p")
      note.className = "palette-note"
      note.textContent = `not loaded: ${broken.map((p) => `${p.name} (${p.error})`).join("; ")}`
      this.list.append(note)
    }
  }

  item(type, spec) {
    const el = document.createElement("div")
    el.className = "palette-item"
    el.dataset.type = type
    el.dataset.search = [type, spec.display_name, spec.category, spec.pack, spec.description].join(" ").toLowerCase()
    el.title = spec.description ?? type
    const name = document.createElement("span")
    name.textContent = spec.display_name || type
    el.append(name)
    if (spec.display_name && spec.display_name.replace(/\s/g, "") !== type) {
      const small = document.createElement("small")
      small.textContent = type
      el.append(small)
    }
    el.addEventListener("pointerdown", (e) => this.startDrag(e, el, type))
    return el
  }

  filter() {
    const words = this.search.value.toLowerCase().split(/\s+/).filter(Boolean)
    for (const section of this.list.querySelectorAll(".palette-category")) {
      let any = false
      for (const item of section.querySelectorAll(".palette-item")) {
        const match = words.every((w) => item.dataset.search.includes(w))
        item.hidden = !match
        any ||= match
      }
      section.hidden = !any
    }
  }

  /** Pointer-driven drag (works with mouse, pen and touch alike). */
  startDrag(down, el, type) {
    if (down.button !== 0) return
    down.preventDefault()
    let ghost = null
    const move = (e) => {
      if (!ghost && Math.hypot(e.clientX - down.clientX, e.clientY - down.clientY) < DRAG_THRESHOLD) return
      if (!ghost) {
        ghost = el.cloneNode(true)
        ghost.classList.add("palette-ghost")
        document.body.append(ghost)
      }
      ghost.style.left = `${e.clientX + 8}px`
      ghost.style.top = `${e.clientY + 8}px`
    }
    const up = (e) => {
      window.removeEventListener("pointermove", move, true)
      window.removeEventListener("pointerup", up, true)
      window.removeEventListener("pointercancel", up, true)
      const dragged = !!ghost
      ghost?.remove()
      if (e.type === "pointercancel") return
      if (!dragged) {
        this.app.addNode(type)
        return
      }
      const canvasEl = this.app.canvas.canvas
      const rect = canvasEl.getBoundingClientRect()
      const inside = e.clientX >= rect.left && e.clientX <= rect.right && e.clientY >= rect.top && e.clientY <= rect.bottom
      if (!inside) return
      const pos = this.app.canvas.ds.convertCanvasToOffset([e.clientX - rect.left, e.clientY - rect.top])
      // The pointer ends on the node's title bar, where it was "held".
      this.app.addNode(type, [pos[0] - 20, pos[1] + 10])
    }
    // Capture phase: the canvas stops the pointer events it handles from bubbling.
    window.addEventListener("pointermove", move, true)
    window.addEventListener("pointerup", up, true)
    window.addEventListener("pointercancel", up, true)
  }
}
