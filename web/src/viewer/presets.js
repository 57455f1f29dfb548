// Window presets (width/level in HU) with their keyboard keys, and 3-D volume rendering presets.

export const WINDOW_PRESETS = [
  { name: "lung", label: "Lung", key: "1", width: 1500, center: -600 },
  { name: "mediastinum", label: "Mediastinum", short: "Mediast.", key: "2", width: 350, center: 50 },
  { name: "bone", label: "Bone", key: "3", width: 1800, center: 400 },
  { name: "brain", label: "Brain", key: "4", width: 80, center: 40 },
  { name: "abdomen", label: "Abdomen", short: "Abdomen", key: "5", width: 400, center: 50 },
  { name: "liver", label: "Liver", key: "6", width: 150, center: 30 },
];

export function presetByName(name) {
  const n = String(name || "").toLowerCase();
  return WINDOW_PRESETS.find((p) => p.name === n || p.label.toLowerCase() === n);
}

export function voiRange(width, center) {
  return { lower: center - width / 2, upper: center + width / 2 };
}

export function widthCenter(range) {
  if (!range) return null;
  return { width: range.upper - range.lower, center: (range.upper + range.lower) / 2 };
}

/** Volume rendering presets offered in 3-D (names of Cornerstone's built-in presets). */
export const VOLUME_PRESETS = [
  { name: "CT-Chest-Contrast-Enhanced", label: "Chest" },
  { name: "CT-Bone", label: "Bone" },
  { name: "CT-Lung", label: "Lung" },
  { name: "CT-Soft-Tissue", label: "Soft tissue" },
  { name: "CT-MIP", label: "MIP" },
];
