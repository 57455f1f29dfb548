// Human names for the codes the server uses.
import { label } from "./format.js";

const PROTOCOLS = {
  chest_ct: "Chest CT",
  chest_xray: "Chest X-ray",
  breast_us: "Breast ultrasound",
  retina: "Retina (fundus)",
  brain_mr: "Brain MR",
};

export function protocolName(p) {
  if (!p) return "";
  return PROTOCOLS[p] || label(p);
}

export const MODALITIES = ["CT", "CR", "DX", "MR", "US", "MG", "PT", "OP", "XA"];

const ACTIONS = {
  received: "Study received",
  study_complete: "Study complete",
  study_received: "Study received",
  result_stored: "Result stored with the study",
  result_sent: "Result sent",
  urgent_notified: "Urgent finding notified",
  stored: "Instances stored",
  analysis_queued: "Analysis queued",
  analysis_started: "Analysis started",
  analysis_done: "Analysis finished",
  analysis_failed: "Analysis failed",
  analysis_refused: "Analysis refused",
  analysis_error: "Analysis error",
  accept: "Accepted finding",
  accepted: "Accepted finding",
  reject: "Rejected finding",
  rejected: "Rejected finding",
  edit: "Edited finding",
  edited: "Edited finding",
  add: "Added finding",
  added: "Added finding",
  impression: "Edited the impression",
  finding_accepted: "Accepted a finding",
  finding_rejected: "Rejected a finding",
  finding_edited: "Edited a finding",
  finding_added: "Added a finding",
  finding_withdrawn: "Withdrew an added finding",
  impression_edited: "Edited the impression",
  signed_sr_stored: "Signed SR stored with the study",
  signed_sr_sent: "Signed SR sent",
  signed_sr_send_failed: "Sending the signed SR failed",
  instances_arrived: "Images arrived",
  analysis_retry: "Analysis retried",
  login: "Signed in",
  logout: "Signed out",
  sign: "Signed the report",
  signed: "Signed the report",
  sent: "Results sent",
  send_failed: "Sending failed",
  webhook: "Urgent notification sent",
};

export function actionName(action) {
  if (!action) return "";
  return ACTIONS[action] || label(action);
}

/** "F1 nodule" style label for a finding. */
export function findingTitle(f) {
  const ch = f.characterisation || {};
  const kind = ch.call || [ch.type, f.kind].filter(Boolean).join(" ") || f.kind || "finding";
  return label(kind);
}

export function findingLocation(f) {
  const loc = f.location || {};
  const words = [loc.side, loc.zone, loc.structure].filter(Boolean).join(" ");
  return words ? label(words) : "";
}

const MEASURES = {
  long_axis_diameter: "Long axis",
  short_axis_diameter: "Short axis",
  mean_diameter: "Mean diameter",
  volume: "Volume",
  mean_hu: "Mean density",
  max_hu: "Max density",
  min_hu: "Min density",
  solid_fraction: "Solid share",
  solid_component_diameter: "Solid component",
  diameter: "Diameter",
  operating_point: "Operating point",
};

export function measureName(name) {
  const share = /^gradcam_share_in_(.+)$/.exec(name || "");
  if (share) return `Heatmap in ${label(share[1]).toLowerCase()}`;
  return MEASURES[name] || label(name);
}

/** "Dr. Ana Ruiz" -> "AR" */
export function initials(name) {
  const words = String(name || "").replace(/\b(dr|prof|mr|mrs|ms)\.?\s+/gi, "").split(/[\s^,]+/).filter(Boolean);
  return (words.length > 1 ? words[0][0] + words[words.length - 1][0] : (words[0] || "?").slice(0, 2)).toUpperCase();
}
