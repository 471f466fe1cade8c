// Queueing runs and following them over the WebSocket: per-node progress,
// step previews, output images, validation problems on the offending nodes,
// and live mode (re-queue on every edit, superseding the previous job).

import { setNodeImages, setNodePreview } from "./nodes.js"

const FINISHED = new Set(["job_done", "job_failed", "job_interrupted", "job_cancelled"])
export const LIVE_DELAY_MS = 300

export class Runner {
  /**
   * app: {api, graph, canvas, workflow() -> doc, nodeById(id), status(text, kind), showOutputs(job, images)}
   */
  constructor(app) {
    this.app = app
    this.api = app.api
    this.jobs = new Map() // id -> {id, status, live, title}
    this.events = [] // every message received (the test hook reads it)
    this.live = false
    this._liveTimer = null
    this._liveSeq = 0
    this.api.onMessage((msg) => this.onMessage(msg))
  }

  // -- problems on nodes ------------------------------------------------------

  clearProblems() {
    for (const node of this.app.graph._nodes) {
      if (node.lcm?.problems.length) {
        node.lcm.problems = []
        node.has_errors = false
      }
    }
    this.app.setProblems([])
    this.app.canvas.setDirty(true, true)
  }

  showProblems(problems) {
    this.clearProblems()
    const general = []
    for (const p of problems) {
      const node = p.node != null ? this.app.nodeById(p.node) : null
      if (node) {
        node.lcm.problems.push({ input: p.input, message: p.message, code: p.code })
        node.has_errors = true
      } else {
        general.push(p.node ? `${p.node}: ${p.input ? `${p.input}: ` : ""}${p.message}` : p.message)
      }
    }
    this.app.setProblems(general)
    this.app.canvas.setDirty(true, true)
  }

  // -- queueing ---------------------------------------------------------------

  unfinished(filter = () => true) {
    return [...this.jobs.values()].filter((j) => !j.finished && filter(j))
  }

  async queue({ live = false } = {}) {
    const doc = this.app.workflow()
    const seq = ++this._liveSeq
    if (live) {
      // A newer edit supersedes the pending live job and interrupts the running one.
      const stale = this.unfinished((j) => j.live)
      await Promise.all(stale.map((j) => this.api.cancel(j.id).catch(() => {})))
      if (seq !== this._liveSeq) return null // an even newer edit took over while cancelling
    }
    let body
    try {
      body = await this.api.submit(doc, live ? { title: `live: ${doc.meta?.title ?? "workflow"}` } : {})
    } catch (err) {
      if (err.body?.error === "invalid_workflow") {
        this.showProblems(err.body.problems ?? [])
        const n = err.body.problems?.length ?? 0
        this.app.status(`not queued: the workflow has ${n} problem${n === 1 ? "" : "s"} (marked on the nodes)`, "error")
      } else {
        this.app.status(`not queued: ${err.message}`, "error")
      }
      return null
    }
    this.clearProblems()
    const job = body.job
    // The WebSocket may have reported this job (even its end) before this response arrived.
    const known = this.jobs.get(job.id)
    this.track(job.id, known ? { live } : { live, status: job.status })
    this.app.status(`queued job ${job.id}${body.position ? ` (position ${body.position})` : ""}`)
    return job
  }

  track(id, fields) {
    const job = this.jobs.get(id) ?? { id, finished: false }
    Object.assign(job, fields)
    this.jobs.set(id, job)
    return job
  }

  async interruptAll() {
    const jobs = this.unfinished()
    await Promise.all(jobs.map((j) => this.api.cancel(j.id).catch(() => {})))
  }

  setLive(on) {
    this.live = on
    clearTimeout(this._liveTimer)
    if (on) this.queue({ live: true })
  }

  /** Called on every user edit of the graph. */
  edited() {
    if (!this.live) return
    clearTimeout(this._liveTimer)
    this._liveSeq++ // an edit in flight supersedes a submit that is still cancelling
    this._liveTimer = setTimeout(() => this.queue({ live: true }), LIVE_DELAY_MS)
  }

  // -- events -----------------------------------------------------------------

  onMessage(msg) {
    this.events.push(msg)
    if (this.events.length > 5000) this.events.splice(0, 1000)
    if (msg.type === "queue") { this.app.queueInfo(msg); return }
    if (msg.type === "hello") { this.app.queueInfo(msg.queue ?? {}); return }
    if (!msg.job) return
    const job = this.track(msg.job, {})
    const node = msg.node != null ? this.app.nodeById(msg.node) : null
    switch (msg.type) {
      case "job_started":
        job.status = "running"
        this.app.status(`running job ${msg.job}…`)
        break
      case "run_start":
        for (const n of this.app.graph._nodes) {
          if (!n.lcm) continue
          n.lcm.running = false
          n.progress = undefined
          n.lcm.cached = msg.cached?.includes(n.properties.id) ?? false
        }
        job.total = msg.total
        job.done = 0
        break
      case "node_cached":
        if (node) node.lcm.cached = true
        break
      case "node_start":
        if (node) {
          node.lcm.running = true
          node.lcm.cached = false
          node.progress = 0.001
          if (node.lcm.problems.length) { node.lcm.problems = []; node.has_errors = false }
        }
        this.app.status(`running ${msg.node} (${msg.index + 1}/${msg.total})`)
        this.app.showProgress({ node: msg.node, index: msg.index, total: msg.total })
        break
      case "node_progress":
        if (node) {
          node.progress = msg.total ? msg.step / msg.total : undefined
          if (msg.preview) setNodePreview(node, msg.preview)
        }
        this.app.showProgress({ node: msg.node, step: msg.step, total: msg.total, preview: msg.preview })
        break
      case "node_output":
        if (node) {
          const images = imagesOf(msg.results).map((im) => this.api.fileUrl(im.url))
          if (images.length) setNodeImages(node, images)
        }
        this.app.showOutputs(msg.job, msg.node, imagesOf(msg.results))
        break
      case "node_done":
        if (node) {
          node.lcm.running = false
          node.progress = undefined
        }
        job.done = (job.done ?? 0) + 1
        break
      case "node_error":
        if (node) {
          node.lcm.running = false
          node.progress = undefined
          node.lcm.problems = [{ input: null, message: msg.message }]
          node.has_errors = true
        }
        break
      case "interrupted":
      case "run_error":
        this.stopRunning()
        break
      default:
        break
    }
    if (FINISHED.has(msg.type)) this.finish(job, msg)
    this.app.canvas.setDirty(true, true)
  }

  /** After a reconnect: events may have been missed, so ask how our unfinished jobs ended. */
  async catchUp() {
    for (const job of this.unfinished()) {
      let state
      try {
        state = (await this.api.get(`/api/jobs/${encodeURIComponent(job.id)}`)).job
      } catch {
        continue
      }
      if (!["done", "failed", "interrupted", "cancelled"].includes(state.status)) continue
      for (const [nodeId, results] of Object.entries(state.outputs ?? {})) {
        const node = this.app.nodeById(nodeId)
        const images = imagesOf(results)
        if (node && images.length) setNodeImages(node, images.map((im) => this.api.fileUrl(im.url)))
        this.app.showOutputs(job.id, nodeId, images)
      }
      this.finish(job, { type: `job_${state.status}`, ...state, job: job.id })
    }
    this.app.canvas.setDirty(true, true)
  }

  stopRunning() {
    for (const n of this.app.graph._nodes) {
      if (!n.lcm) continue
      n.lcm.running = false
      n.progress = undefined
    }
  }

  finish(job, msg) {
    job.finished = true
    job.status = msg.type.replace("job_", "")
    this.stopRunning()
    if (!this.unfinished().length) this.app.showProgress(null)
    const error = msg.error
    if (msg.type === "job_done") {
      const cached = msg.cached?.length ?? 0
      this.app.status(`done in ${(msg.seconds ?? 0).toFixed(2)} s: ran ${msg.executed?.length ?? 0} node(s), ${cached} from cache`, "ok")
    } else if (msg.type === "job_failed") {
      if (error?.code === "invalid_workflow") this.showProblems(error.problems ?? [])
      else if (error?.node) {
        const node = this.app.nodeById(error.node)
        if (node) {
          node.lcm.problems = [{ input: null, message: error.message }]
          node.has_errors = true
        }
      }
      this.app.status(`failed: ${error?.message ?? "unknown error"}`, "error")
    } else if (msg.type === "job_interrupted") {
      if (!job.live || !this.unfinished().length) this.app.status(`interrupted job ${job.id}`)
    } else if (msg.type === "job_cancelled" && !job.live) {
      this.app.status(`cancelled job ${job.id}`)
    }
    this.app.jobFinished?.(job, msg)
  }
}

export function imagesOf(results) {
  const images = results?.images
  return Array.isArray(images) ? images.filter((im) => im && typeof im.url === "string") : []
}
