// Read the workflow lcmgraph embeds in the PNGs it writes (lcmgraph/pngmeta.py):
// an iTXt chunk "lcmgraph.workflow" (zlib-compressed JSON). tEXt and zTXt are read too.

export const WORKFLOW_KEY = "lcmgraph.workflow"
const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

export function isPng(bytes) {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b)
}

async function inflate(bytes) {
  // PNG text compression is zlib (RFC 1950), which is what "deflate" means here.
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"))
  return new Uint8Array(await new Response(stream).arrayBuffer())
}

function indexOfZero(bytes, from) {
  for (let i = from; i < bytes.length; i++) if (bytes[i] === 0) return i
  return -1
}

/** All text chunks of a PNG as {keyword: text}. Throws on a file that is not a PNG. */
export async function pngTextChunks(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer)
  if (!isPng(bytes)) throw new Error("not a PNG file")
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const latin1 = new TextDecoder("latin1")
  const utf8 = new TextDecoder("utf-8")
  const out = {}
  let pos = 8
  while (pos + 8 <= bytes.length) {
    const length = view.getUint32(pos)
    const type = latin1.decode(bytes.subarray(pos + 4, pos + 8))
    const start = pos + 8
    const end = start + length
    if (end + 4 > bytes.length) break // truncated file: keep what was read
    const data = bytes.subarray(start, end)
    if (type === "tEXt" || type === "zTXt" || type === "iTXt") {
      const zero = indexOfZero(data, 0)
      if (zero > 0) {
        const keyword = latin1.decode(data.subarray(0, zero))
        try {
          if (type === "tEXt") {
            out[keyword] = latin1.decode(data.subarray(zero + 1))
          } else if (type === "zTXt") {
            out[keyword] = latin1.decode(await inflate(data.subarray(zero + 2)))
          } else {
            const compressed = data[zero + 1] === 1
            const langEnd = indexOfZero(data, zero + 3)
            const transEnd = langEnd < 0 ? -1 : indexOfZero(data, langEnd + 1)
            if (transEnd >= 0) {
              const text = data.subarray(transEnd + 1)
              out[keyword] = utf8.decode(compressed ? await inflate(text) : text)
            }
          }
        } catch (err) {
          console.warn(`lcmgraph: unreadable PNG text chunk ${keyword}:`, err)
        }
      }
    }
    if (type === "IEND") break
    pos = end + 4 // skip the CRC
  }
  return out
}

/** The embedded workflow document, or null when the PNG carries none. */
export async function workflowFromPng(buffer) {
  const text = (await pngTextChunks(buffer))[WORKFLOW_KEY]
  return text ? JSON.parse(text) : null
}
