// The routes the API serves: one list, read by the router and by the OpenAPI document
// (whose test checks that the two agree).
export const NS_RE = "([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)";
export const NAME_RE = "([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)";

export const API_PATHS = [
  ["GET", "/api/v1/namespaces/{namespace}/reports"],
  ["GET", "/api/v1/namespaces/{namespace}/patchjobs"],
  ["POST", "/api/v1/namespaces/{namespace}/patchjobs"],
  ["GET", "/api/v1/namespaces/{namespace}/patchjobs/{name}"],
  ["POST", "/api/v1/namespaces/{namespace}/patchjobs/{name}/cancel"],
  ["GET", "/api/v1/namespaces/{namespace}/events"],
] as const;

/** The regular expression of a path template ({namespace}, {name} as capture groups 1 and 3). */
export function pathPattern(template: string): RegExp {
  return new RegExp("^" + template.replace("{namespace}", NS_RE).replace("{name}", NAME_RE) + "$");
}
