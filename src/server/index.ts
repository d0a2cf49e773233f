// The HTTP API and the web UI: Kubernetes tokens, each call checked by RBAC.
export { startApi, type ApiOptions, type RunningApi } from "./api.ts";
export {
  DEFAULT_TOKEN_AUDIENCE,
  kubeAuthenticator,
  tokenAudiences,
  tokenExpiry,
  type Authenticator,
  type Caller,
} from "./auth.ts";
export {
  admissionHandler,
  type AdmissionOptions,
  DEFAULT_VERDICT_TTL_MS,
  imagesToVerify,
  startAdmissionServer,
} from "./admission.ts";
