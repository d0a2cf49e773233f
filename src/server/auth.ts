// Who is calling, and may they: the caller's Kubernetes bearer token checked with a
// TokenReview, each action checked with a SubjectAccessReview for that user against the
// resource it touches. So the API grants exactly what the cluster's RBAC grants, and the
// server's own (wider) rights are never lent to a caller. Answers are cached briefly by
// a hash of the token (never the token itself), as the apiserver's webhook authorizers do.
import { createHash } from "node:crypto";
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";

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

const TTL_MS = 10_000;

export function kubeAuthenticator(kc: KubeConfig, audiences?: string[]): Authenticator {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const users = new Map<string, { at: number; caller?: Caller }>();
  const decisions = new Map<string, { at: number; ok: boolean }>();
  const fresh = (at: number) => Date.now() - at < TTL_MS;
  const prune = <V extends { at: number }>(m: Map<string, V>) => {
    if (m.size > 10_000) for (const [k, v] of m) if (!fresh(v.at)) m.delete(k);
  };
  return {
    async authenticate(token) {
      const key = createHash("sha256").update(token).digest("hex");
      const hit = users.get(key);
      if (hit && fresh(hit.at)) return hit.caller;
      const r = await authn.createTokenReview({
        body: {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenReview",
          spec: { token, ...(audiences ? { audiences } : {}) },
        },
      });
      const u = r.status?.authenticated ? r.status.user : undefined;
      const caller: Caller | undefined = u?.username
        ? {
            username: u.username,
            ...(u.uid ? { uid: u.uid } : {}),
            groups: u.groups ?? [],
            ...(u.extra ? { extra: u.extra } : {}),
          }
        : undefined;
      prune(users);
      users.set(key, { at: Date.now(), caller });
      return caller;
    },
    async allowed(caller, a) {
      const key = JSON.stringify([caller.username, caller.uid, caller.groups, caller.extra, a]);
      const hit = decisions.get(key);
      if (hit && fresh(hit.at)) return hit.ok;
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
      const ok = !!r.status?.allowed && !r.status.denied;
      prune(decisions);
      decisions.set(key, { at: Date.now(), ok });
      return ok;
    },
  };
}

/** The bearer token of a request, if it carries one. */
export function bearerToken(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return m?.[1];
}
