// Toolbar icons (24x24 line drawings, stroke = currentColor).
const svg = (body) =>
  `<svg viewBox="0 0 24 24" width="18" height="18" fill="none" stroke="currentColor" stroke-width="1.7" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${body}</svg>`;

export const ICONS = {
  single: svg('<rect x="3.5" y="3.5" width="17" height="17" rx="2"/>'),
  mpr: svg('<rect x="3.5" y="3.5" width="17" height="17" rx="2"/><path d="M13 3.5v17M13 12h7.5"/>'),
  compare: svg('<rect x="3.5" y="4.5" width="7.5" height="15" rx="1.5"/><rect x="13" y="4.5" width="7.5" height="15" rx="1.5"/>'),
  "3d": svg('<path d="M12 3 4 7.5v9L12 21l8-4.5v-9L12 3z"/><path d="M4 7.5 12 12l8-4.5M12 12v9"/>'),
  wl: svg('<circle cx="12" cy="12" r="8.5"/><path d="M12 3.5a8.5 8.5 0 0 1 0 17z" fill="currentColor"/>'),
  pan: svg('<path d="M12 3v18M3 12h18M12 3l-2.5 2.5M12 3l2.5 2.5M12 21l-2.5-2.5M12 21l2.5-2.5M3 12l2.5-2.5M3 12l2.5 2.5M21 12l-2.5-2.5M21 12l-2.5 2.5"/>'),
  zoom: svg('<circle cx="10.5" cy="10.5" r="6.5"/><path d="m15.5 15.5 5 5M10.5 7.5v6M7.5 10.5h6"/>'),
  length: svg('<path d="M4 17 17 4l3 3L7 20z"/><path d="m8 13 1.5 1.5M11 10l1.5 1.5M14 7l1.5 1.5"/>'),
  mark: svg('<circle cx="12" cy="12" r="7.5" stroke-dasharray="3 2.2"/><path d="M12 9v6M9 12h6"/>'),
  crosshairs: svg('<circle cx="12" cy="12" r="7"/><path d="M12 2.5v5M12 16.5v5M2.5 12h5M16.5 12h5"/>'),
  reset: svg('<path d="M4.5 12a7.5 7.5 0 1 0 2.2-5.3"/><path d="M4 4v4.5h4.5"/>'),
  layers: svg('<path d="m12 4 8.5 4.5L12 13 3.5 8.5z"/><path d="m3.5 12.5 8.5 4.5 8.5-4.5"/><path d="m3.5 16 8.5 4.5 8.5-4.5" opacity=".6"/>'),
  mip: svg('<path d="M5 6h14M5 10h14M5 14h14M5 18h14" opacity=".45"/><path d="M8 20V4M16 20V4"/>'),
  invert: svg('<circle cx="12" cy="12" r="8.5"/><path d="M12 3.5a8.5 8.5 0 0 0 0 17z" fill="currentColor"/><path d="M7 12h10" stroke="none"/>'),
  link: svg('<path d="M9.5 14.5 14.5 9.5"/><path d="M11 6.5 12.8 4.7a4 4 0 0 1 5.6 5.6L16.6 12M13 17.5l-1.8 1.8a4 4 0 0 1-5.6-5.6L7.4 12"/>'),
  download: svg('<path d="M12 4v11M7.5 10.5 12 15l4.5-4.5M5 19.5h14"/>'),
  eye: svg('<path d="M2.5 12S6 5.5 12 5.5 21.5 12 21.5 12 18 18.5 12 18.5 2.5 12 2.5 12z"/><circle cx="12" cy="12" r="2.8"/>'),
};
