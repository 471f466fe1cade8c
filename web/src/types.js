// Socket type rules: the same as lcmgraph/types.py `link_compatible`.

export const ANY = "*"

/** Whether an output of `outputType` may feed an input of `inputType`. */
export function linkCompatible(outputType, inputType) {
  outputType = String(outputType ?? "")
  inputType = String(inputType ?? "")
  if (outputType === inputType || outputType === ANY || inputType === ANY) return true
  // A STRING output may drive an enum widget; the choice is checked at run time.
  if (inputType === "ENUM" && outputType === "STRING") return true
  // An INT is a valid FLOAT (a "steps" primitive feeding a float widget).
  return inputType === "FLOAT" && outputType === "INT"
}

/** Socket colours by type (links take their output's colour). */
export const TYPE_COLORS = {
  MODEL: "#b39ddb",
  CLIP: "#ffd54f",
  VAE: "#ef5350",
  CONDITIONING: "#ffa726",
  LATENT: "#f48fb1",
  IMAGE: "#64b5f6",
  MASK: "#81c784",
  CONTROL_NET: "#4db6ac",
  INT: "#9ccc65",
  FLOAT: "#aed581",
  STRING: "#90a4ae",
  BOOLEAN: "#ce93d8",
  ENUM: "#bcaaa4",
}

export function typeColor(type) {
  if (TYPE_COLORS[type]) return TYPE_COLORS[type]
  // A pack's own type gets a stable colour from its name.
  let h = 0
  for (const ch of String(type)) h = (h * 31 + ch.charCodeAt(0)) >>> 0
  return `hsl(${h % 360} 55% 65%)`
}
