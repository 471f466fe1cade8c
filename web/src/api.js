// The HTTP/WebSocket API of `lcmgraph serve` (docs/api.md), as the editor uses it.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`)
    this.status = status
    this.body = body || {}
  }
}

function randomId() {
  const bytes = new Uint8Array(6)
  crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
}

export class Api {
  constructor({ base = "", token = null } = {}) {
    this.base = base
    this.token = token
    // One client id per tab: the server routes our jobs' events to it.
    let id = sessionStorage.getItem("lcmgraph.client_id")
    if (!id) {
      id = `editor-${randomId()}`
      sessionStorage.setItem("lcmgraph.client_id", id)
    }
    this.clientId = id
    this.ws = null
    this.listeners = new Set()
    this.statusListeners = new Set()
    this.connected = false
    this._retry = 0
    this._closed = false
  }

  headers(extra = {}) {
    const h = { ...extra }
    if (this.token) h.Authorization = `Bearer ${this.token}`
    return h
  }

  /** A URL the browser loads by itself (<img src>): the token rides in the query. */
  fileUrl(url) {
    if (!this.token || !url) return url
    return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.token)
  }

  async request(method, path, body) {
    const init = { method, headers: this.headers() }
    if (body !== undefined) {
      if (body instanceof FormData) {
        init.body = body
      } else if (body instanceof Blob) {
        init.headers["Content-Type"] = body.type.startsWith("image/") ? body.type : "application/octet-stream"
        init.body = body
      } else {
        init.headers["Content-Type"] = "application/json"
        init.body = JSON.stringify(body)
      }
    }
    const response = await fetch(this.base + path, init)
    let data = null
    const type = response.headers.get("Content-Type") || ""
    if (type.includes("application/json")) data = await response.json()
    if (!response.ok) throw new ApiError(response.status, data)
    return data
  }

  get(path) { return this.request("GET", path) }
  post(path, body) { return this.request("POST", path, body) }

  nodes() { return this.get("/api/nodes") }
  models() { return this.get("/api/models") }
  modelFolder(folder) { return this.get(`/api/models/${encodeURIComponent(folder)}`) }
  workflows() { return this.get("/api/workflows") }
  workflow(name) { return this.get(`/api/workflows/${encodeURIComponent(name)}`) }
  validate(workflow) { return this.post("/api/validate", { workflow }) }
  submit(workflow, extra = {}) {
    return this.post("/api/jobs", { workflow, client_id: this.clientId, ...extra })
  }
  cancel(jobId) { return this.post(`/api/jobs/${encodeURIComponent(jobId)}/cancel`, {}) }
  interrupt(jobId) { return this.post("/api/interrupt", jobId ? { job: jobId } : {}) }
  queue() { return this.get(`/api/queue?client_id=${encodeURIComponent(this.clientId)}`) }
  upload(file, overwrite = false) {
    const form = new FormData()
    form.append("image", file, file.name || "image.png")
    form.append("overwrite", overwrite ? "true" : "false")
    return this.post("/api/upload", form)
  }
  /** A painted mask (a PNG Blob whose alpha is the mask) saved as the alpha of input image `original`. */
  uploadMask(blob, name, original) {
    const form = new FormData()
    form.append("image", blob, name)
    form.append("overwrite", "true")
    form.append("mask_of", original)
    return this.post("/api/upload", form)
  }

  /** The workflow embedded in an image (a File): {workflow, from, notes}. */
  workflowFromImage(file, { allowMissing = false } = {}) {
    const query = new URLSearchParams({ allow_missing: String(allowMissing) })
    if (file.name) query.set("name", file.name)
    return this.post(`/api/workflow/from-image?${query}`, file)
  }

  onMessage(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn) }
  onStatus(fn) { this.statusListeners.add(fn); return () => this.statusListeners.delete(fn) }

  connect() {
    this._closed = false
    const proto = location.protocol === "https:" ? "wss:" : "ws:"
    const host = this.base ? new URL(this.base).host : location.host
    let url = `${proto}//${host}/api/ws?client_id=${encodeURIComponent(this.clientId)}&scope=own`
    if (this.token) url += `&token=${encodeURIComponent(this.token)}`
    const ws = new WebSocket(url)
    this.ws = ws
    ws.addEventListener("open", () => {
      this._retry = 0
      this.connected = true
      for (const fn of this.statusListeners) fn(true)
    })
    ws.addEventListener("message", (event) => {
      let msg
      try { msg = JSON.parse(event.data) } catch { return }
      for (const fn of this.listeners) {
        try { fn(msg) } catch (err) { console.error("lcmgraph: message handler failed", err) }
      }
    })
    ws.addEventListener("close", () => {
      if (this.ws !== ws) return
      this.connected = false
      for (const fn of this.statusListeners) fn(false)
      if (this._closed) return
      // Reconnect with backoff; the app catches up from /api/queue and /api/history.
      const delay = Math.min(5000, 250 * 2 ** this._retry++)
      setTimeout(() => { if (!this._closed) this.connect() }, delay)
    })
  }

  close() {
    this._closed = true
    this.ws?.close()
  }
}
