import { defineConfig } from "vite"

// `npm run build` writes web/dist/, which `lcmgraph serve` serves at /.
// `npm run dev` serves the editor with hot reload and forwards /api to a
// running `lcmgraph serve` (default port 8188; LCMGRAPH_API to change it).
const api = process.env.LCMGRAPH_API ?? "http://127.0.0.1:8188"

export default defineConfig({
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    chunkSizeWarningLimit: 1200,
  },
  server: {
    proxy: {
      "/api/ws": { target: api.replace(/^http/, "ws"), ws: true },
      "/api": { target: api, changeOrigin: false },
    },
  },
})
