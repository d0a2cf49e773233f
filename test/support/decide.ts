// The report decision as tests call it: a parsed report in, the CRD's spec schema loaded
// once (as the controller's main does).
import {
  type PatchJob,
  patchJobSpecSchema,
  specProblems,
  type VulnerabilityReport,
} from "../../src/api/index.ts";
import { decideFacts, type DecideSettings, type Decision, reportFacts } from "../../src/decide/index.ts";

export const SPEC_SCHEMA = patchJobSpecSchema();

export function decide(
  report: VulnerabilityReport,
  existing: PatchJob | undefined,
  settings: DecideSettings = {},
): Decision {
  return decideFacts(reportFacts(report), existing, settings, SPEC_SCHEMA);
}

export function patchJobSpecProblems(spec: unknown): string[] {
  return specProblems(spec, SPEC_SCHEMA);
}
