// Build of the medimg workstation: bundles into ../src/medimg/web/static, which the server serves at /ui.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  base: "/ui/",
  root: ".",
  build: {
    outDir: "../src/medimg/web/static",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 8000,
    rollupOptions: { input: { index: "index.html" } },
  },
  // Node's "events" for vtk.js's xmlbuilder2 (see src/shims/events.js)
  resolve: { alias: { events: fileURLToPath(new URL("./src/shims/events.js", import.meta.url)) } },
  // `npm run dev`: the API and DICOMweb of a running `medimg serve` (MEDIMG_URL, default port 8080)
  server: {
    proxy: Object.fromEntries(["/api", "/dicomweb"].map((p) => [p, { target: process.env.MEDIMG_URL || "http://127.0.0.1:8080", changeOrigin: false }])),
  },
  worker: { format: "es" },
  optimizeDeps: { exclude: ["@cornerstonejs/dicom-image-loader"] },
});
