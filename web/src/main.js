import { init as csInit } from "@cornerstonejs/core";
import { init as dicomLoaderInit } from "@cornerstonejs/dicom-image-loader";
import { init as toolsInit } from "@cornerstonejs/tools";

await csInit();
dicomLoaderInit({ maxWebWorkers: 2 });
toolsInit();
document.getElementById("app").textContent = "medimg";
