// Who is calling, and may they: the caller's Kubernetes bearer token checked with a
// TokenReview, each action checked with a SubjectAccessReview for that user against the
// resource it touches. So the API grants exactly what the cluster's RBAC grants, and the
// server's own (wider) rights are never lent to a caller. Answers are cached briefly by
// a hash of the token (never the token itself), as the apiserver's webhook authorizers do.
import { createHash } from "node:crypto";
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";
import { type Clock, realClock } from "../kube/index.ts";

export interface Caller {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

export interface Access {
  verb: "get" | "list" | "watch" | "create" | "update" | "delete";
  group: string;
  resource: string;
  subresource?: string;
  namespace: string;
  name?: string;
}

export interface Authenticator {
  authenticate(token: string): Promise<Caller | undefined>;
  allowed(caller: Caller, access: Access): Promise<boolean>;
}

/** How long an answer (a token's user, an access decision) is reused. @default 10_000 */
export const DEFAULT_AUTH_CACHE_TTL_MS = 10_000;
/** Entries kept before expired ones are pruned. @default 10_000 */
export const DEFAULT_AUTH_CACHE_SIZE = 10_000;

/** The two reviews the apiserver answers (TokenReview, SubjectAccessReview), as plain values. */
export interface Reviews {
  tokenReview(token: string, audiences?: string[]): Promise<Caller | undefined>;
  accessReview(caller: Caller, access: Access): Promise<boolean>;
}

/**
 * A TokenReview asked for audiences must answer with one of them: an empty
 * status.audiences means "valid for the apiserver's own audience" (an apiserver that does
 * not know audiences answers so), which is not ours.
 */
export function audienceAccepted(requested: string[] | undefined, answered: string[] | undefined): boolean {
  return !requested?.length || (answered ?? []).some((a) => requested.includes(a));
}

export function kubeReviews(kc: KubeConfig): Reviews {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  return {
    async tokenReview(token, audiences) {
      const r = await authn.createTokenReview({
        body: {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenReview",
          spec: { token, ...(audiences ? { audiences } : {}) },
        },
      });
      const ok = r.status?.authenticated && audienceAccepted(audiences, r.status.audiences);
      const u = ok ? r.status?.user : undefined;
      return u?.username
        ? {
            username: u.username,
            ...(u.uid ? { uid: u.uid } : {}),
            groups: u.groups ?? [],
            ...(u.extra ? { extra: u.extra } : {}),
          }
        : undefined;
    },
    async accessReview(caller, a) {
      const r = await authz.createSubjectAccessReview({
        body: {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SubjectAccessReview",
          spec: {
            user: caller.username,
            ...(caller.uid ? { uid: caller.uid } : {}),
            groups: caller.groups,
            ...(caller.extra ? { extra: caller.extra } : {}),
            resourceAttributes: {
              verb: a.verb,
              group: a.group,
              resource: a.resource,
              ...(a.subresource ? { subresource: a.subresource } : {}),
              namespace: a.namespace,
              ...(a.name ? { name: a.name } : {}),
            },
          },
        },
      });
      return !!r.status?.allowed && !r.status.denied;
    },
  };
}

export interface AuthenticatorOptions {
  audiences?: string[];
  /** @default DEFAULT_AUTH_CACHE_TTL_MS */
  ttlMs?: number;
  /** @default DEFAULT_AUTH_CACHE_SIZE */
  maxEntries?: number;
  clock?: Pick<Clock, "now">;
}

/**
 * Answers cached briefly, refusals too (so a stream of bad tokens is not a stream of
 * TokenReviews), keyed by a hash of the token, never the token itself.
 */
export function cachingAuthenticator(reviews: Reviews, o: AuthenticatorOptions = {}): Authenticator {
  const ttl = o.ttlMs ?? DEFAULT_AUTH_CACHE_TTL_MS;
  const max = o.maxEntries ?? DEFAULT_AUTH_CACHE_SIZE;
  const clock = o.clock ?? realClock;
  const users = new Map<string, { at: number; caller?: Caller }>();
  const decisions = new Map<string, { at: number; ok: boolean }>();
  const fresh = (at: number) => clock.now() - at < ttl;
  const prune = <V extends { at: number }>(m: Map<string, V>) => {
    if (m.size >= max) for (const [k, v] of m) if (!fresh(v.at)) m.delete(k);
  };
  return {
    async authenticate(token) {
      const key = createHash("sha256").update(token).digest("hex");
      const hit = users.get(key);
      if (hit && fresh(hit.at)) return hit.caller;
      const caller = await reviews.tokenReview(token, o.audiences);
      prune(users);
      users.set(key, { at: clock.now(), caller });
      return caller;
    },
    async allowed(caller, a) {
      const key = JSON.stringify([caller.username, caller.uid, caller.groups, caller.extra, a]);
      const hit = decisions.get(key);
      if (hit && fresh(hit.at)) return hit.ok;
      const ok = await reviews.accessReview(caller, a);
      prune(decisions);
      decisions.set(key, { at: clock.now(), ok });
      return ok;
    },
  };
}

/**
 * The audience the API's tokens must carry (`kubectl create token NAME --audience
 * vuln-patcher`): a token made for the API is refused by the apiserver (whose audience it
 * is not), and the apiserver's own tokens (a Pod's, say) are refused here.
 */
export const DEFAULT_TOKEN_AUDIENCE = "vuln-patcher";

export function kubeAuthenticator(kc: KubeConfig, audiences?: string[]): Authenticator {
  return cachingAuthenticator(kubeReviews(kc), audiences?.length ? { audiences } : {});
}

/** The audiences for a --token-audience flag: the default, or none when given "". */
export function tokenAudiences(flag: string | undefined): string[] {
  const a = flag ?? DEFAULT_TOKEN_AUDIENCE;
  return a ? [a] : [];
}

/**
 * When a JWT expires (its `exp`), read without checking the signature: the TokenReview
 * already vouched for it; this only says when to look again. Undefined for other tokens.
 */
export function tokenExpiry(token: string): Date | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { exp?: unknown }).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? new Date(exp * 1000) : undefined;
  } catch {
    return undefined;
  }
}

/** The bearer token of a request, if it carries one. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return m?.[1];
}
