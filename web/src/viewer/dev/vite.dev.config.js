// Development build of web/viewer-dev.html alone (not the app): output to $MV_OUT (default
// /tmp/medimg-viewer-dev), served by devserver.py at /mvdev/.
import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

const web = fileURLToPath(new URL("../../../", import.meta.url));

export default defineConfig({
  base: "/mvdev/",
  root: web,
  logLevel: "warn",
  build: {
    outDir: process.env.MV_OUT || "/tmp/medimg-viewer-dev",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 8000,
    minify: process.env.MV_MINIFY === "1",
    rollupOptions: { input: { "viewer-dev": `${web}viewer-dev.html` } },
  },
  // the app's stand-in for Node's "events" (vtk.js's xmlbuilder2), as in web/vite.config.js
  resolve: { alias: { events: `${web}src/shims/events.js` } },
  worker: { format: "es" },
  optimizeDeps: { exclude: ["@cornerstonejs/dicom-image-loader"] },
});
