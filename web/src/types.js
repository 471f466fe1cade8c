// Socket type rules. The link rule is the engine's (lcmgraph/types.py), served
// as data in the node schema's "link_rules"; nothing here repeats it.

let rules = null

/** Take the link rules from the node schema (GET /api/nodes). */
export function setLinkRules(linkRules) {
  const any = linkRules?.any
  const also = linkRules?.also_accepts
  if (typeof any !== "string" || !also || typeof also !== "object" || Array.isArray(also)) {
    throw new Error("the server's node schema has no usable \"link_rules\" (an older server?)")
  }
  rules = {
    any,
    alsoAccepts: new Map(Object.entries(also).map(([input, outputs]) => [input, new Set(outputs.map(String))])),
  }
}

/** The wildcard type: a socket of this type connects to any other. */
export function anyType() {
  if (!rules) throw new Error("the link rules are not loaded yet (they come with the node schema)")
  return rules.any
}

/** Whether an output of `outputType` may feed an input of `inputType`. */
export function linkCompatible(outputType, inputType) {
  const any = anyType()
  outputType = String(outputType ?? "")
  inputType = String(inputType ?? "")
  if (outputType === inputType || outputType === any || inputType === any) return true
  return rules.alsoAccepts.get(inputType)?.has(outputType) ?? false
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
