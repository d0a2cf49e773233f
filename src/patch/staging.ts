// The staging tag: where copa pushes before vuln-patcher publishes (an index's platforms,
// and any image that must be signed before it gets its tag).
import { createHash } from "node:crypto";

/** Where copa pushes before vuln-patcher publishes: `<tag>-vp-staging` (shortened to stay a valid tag). */
export function stagingTag(tag: string): string {
  const t = `${tag}-vp-staging`;
  if (t.length <= 100) return t;
  return `${tag.slice(0, 70)}-${createHash("sha256").update(tag).digest("hex").slice(0, 12)}-vp-staging`;
}
