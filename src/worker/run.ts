// What an attempt runs: the patch engine for an image or an index, or the plan of a dry
// run. The request's signal reaches the executor, so copa stops when the worker does.
import { formatImageRef, type ImageRef, PatchError, type PatchJob, Reason } from "../api/index.ts";
import { describePlan, sourceRef, targetRef } from "../decide/index.ts";
import {
  builderKey,
  type CosignSigner,
  type Executor,
  type ImageSigner,
  OPENVEX_TYPE,
  PROVENANCE_TYPE,
  onBuilders,
  parseBuilderAddrs,
  patchImage,
  patchIndex,
  planUpdates,
} from "../patch/index.ts";
import { readPackageDB, type RegistryClient } from "../registry/index.ts";

import { errorMessage, type Logger } from "../util/index.ts";

import type { RunResult } from "./record.ts";
import { attestationsFor, type ToolVersions } from "./attestations.ts";

export interface EngineDeps {
  executor: Executor;
  registry: RegistryClient;
  /** One BuildKit, or several comma-separated (one per replica: see src/patch/builders.ts). */
  buildkitAddr: string;
  tls?: { caCert: string; cert: string; key: string };
  /** The attempt's registry credentials for copa (dockerconfigjson text). */
  dockerConfig?: string;
  /** copa's environment for runs with library updates (the worker's --copa-https-proxy). */
  libraryEnv?: Record<string, string>;
  /** A patch moved from an unreachable BuildKit to the next (metrics). */
  onFailover?: (from: string) => void;
  /** Sign and attest every published image (docs/signing.md). @default no signing */
  signer?: CosignSigner;
  /** For the provenance statement: this worker, and the tools it runs. */
  identity?: string;
  tools?: ToolVersions;
}

export interface Attempt {
  pj: PatchJob;
  signal: AbortSignal;
  /** A sign of life for the queue (a long patch must not look dead). */
  working: () => void;
  log: Logger;
}

export async function runAttempt(d: EngineDeps, a: Attempt): Promise<RunResult> {
  const { pj, log } = a;
  const spec = pj.spec;
  if (!spec.image) throw new PatchError(Reason.InvalidSpec, "spec.image is missing: nothing to patch");
  const image = spec.image;
  const source = sourceRef({ image });
  let target;
  try {
    target = targetRef({ image, target: spec.target });
  } catch (err) {
    throw new PatchError(Reason.InvalidSpec, errorMessage(err));
  }
  const common = {
    id: `${pj.metadata.name}-${pj.metadata.generation ?? 1}`,
    source,
    target,
    os: spec.os,
    tls: d.tls,
    timeout: spec.options?.timeout,
    ignoreErrors: spec.options?.ignoreErrors,
    executor: d.executor,
    registry: d.registry,
    signal: a.signal,
    onProgress: (stage: string, message: string) => {
      a.working();
      log.info({ stage }, message);
    },
    onOutput: () => a.working(),
    namespace: pj.metadata.namespace,
    owner: { apiVersion: pj.apiVersion, kind: pj.kind, name: pj.metadata.name, uid: pj.metadata.uid! },
    ...(d.dockerConfig !== undefined ? { dockerConfig: d.dockerConfig } : {}),
  };
  if (spec.dryRun) {
    if (image.platform === "all")
      throw new PatchError(
        Reason.InvalidSpec,
        "a dry run of a whole index is not supported: plan one platform",
      );
    const src = await d.registry.manifestFor(source, image.platform);
    if (!src) throw new PatchError(Reason.ImageNotFound, `source image ${formatImageRef(source)} not found`);
    const db = await readPackageDB(d.registry, source, src.manifest.layers);
    const plan = planUpdates(spec.updates ?? [], db, spec.os?.type);
    return {
      kind: "planned",
      message: `dry run: ${describePlan(plan.needed)}; ${plan.satisfied.length} already in the image`,
      updates: plan.needed,
    };
  }
  // On the BuildKit the source repository hashes to; on the next if that one is down.
  const { result, builder } = await onBuilders(
    parseBuilderAddrs(d.buildkitAddr),
    builderKey(source),
    async (buildkitAddr): Promise<RunResult> => {
      if (image.platform !== "all")
        return patchImage({
          ...common,
          buildkitAddr,
          ...(d.signer ? { sign: signerFor(d, d.signer, a, { source, target, buildkitAddr }) } : {}),
          platform: image.platform,
          // Library updates alone: an empty OS list is a plan with nothing in it, not "update everything".
          updates: spec.updates?.length || spec.libraryUpdates?.length ? (spec.updates ?? []) : undefined,
          ...(spec.libraryUpdates?.length
            ? { libraryUpdates: spec.libraryUpdates, ...(d.libraryEnv ? { libraryEnv: d.libraryEnv } : {}) }
            : {}),
        });
      const result = await patchIndex({
        ...common,
        buildkitAddr,
        ...(d.signer ? { sign: signerFor(d, d.signer, a, { source, target, buildkitAddr }) } : {}),
        // No platform list (a PatchJob made by hand for a whole index): every platform, update-all.
        platforms: spec.platforms?.map((p) => ({ platform: p.platform, updates: p.updates ?? [] })),
        publishPartial: spec.options?.publishPartial,
      });
      return { kind: "index", result };
    },
    {
      signal: a.signal,
      onFailover: (from, to, err) => {
        d.onFailover?.(from);
        log.warn(
          { buildkit: from, next: to, err: err.message },
          "BuildKit unreachable: the patch goes to the next replica",
        );
      },
    },
  );
  return { ...result, builder: builder.addr };
}

/** This attempt's signer: its own credentials, and the provenance of this PatchJob. */
function signerFor(
  d: EngineDeps,
  signer: CosignSigner,
  a: Attempt,
  at: { source: ImageRef; target: ImageRef; buildkitAddr: string },
): ImageSigner {
  const ctx = { ...(d.dockerConfig !== undefined ? { dockerConfig: d.dockerConfig } : {}), signal: a.signal };
  const types = [OPENVEX_TYPE, PROVENANCE_TYPE];
  return async (image, facts, o) => {
    const t = performance.now();
    // An image already under the tag (adopted): signed by an earlier attempt or PatchJob.
    if (o?.adopted && (await signer.signedAlready(image, types, ctx)))
      return { digest: image.digest!, attestations: types, ms: performance.now() - t };
    return signer.signAndAttest(
      image,
      attestationsFor({
        pj: a.pj,
        source: at.source,
        patched: at.target,
        facts,
        worker: d.identity ?? "",
        buildkit: at.buildkitAddr,
        tools: d.tools ?? {},
      }),
      ctx,
    );
  };
}
