// The medimg workstation: sign-in, worklist, study review (with the Cornerstone3D viewer from
// ./viewer, loaded on demand) and the quality dashboard.
import "./styles/tokens.css";
import "./styles/base.css";
import "./styles/components.css";
import "./styles/screens.css";
import { startApp } from "./app/app.js";

startApp(document.getElementById("app"));
