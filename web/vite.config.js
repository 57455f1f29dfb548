// Build of the medimg workstation: bundles into ../src/medimg/web/static, which the server serves at /ui.
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
  worker: { format: "es" },
  optimizeDeps: { exclude: ["@cornerstonejs/dicom-image-loader"] },
});
