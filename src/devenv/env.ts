// The real-component environment: one call starts what a test (or `vuln-patcher dev
// up`) needs on 127.0.0.1 with free ports and data in one directory; stop() (or
// `await using`) stops every process by pid, in reverse order.
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { loadKubeConfig } from "../kube/index.ts";
import { dockerConfigJSON } from "../registry/index.ts";
import type { Component } from "./component.ts";
import { startControlPlane, type ControlPlane } from "./controlplane.ts";
import { natsCluster, natsServer, type NatsServer } from "./nats.ts";
import { makeRegistryAuth, registryServer, type Registry, type RegistryAuth } from "./registry.ts";
import { ensureGoTools, goBinary, type GoComponent } from "./tools.ts";
import { buildkitServer, type BuildKit } from "./buildkit.ts";
import {
  seedMultiArch,
  seedRegistry,
  seedVulnerable,
  type SeededImages,
  type SeededIndex,
} from "./images.ts";
import { ensureEmulation } from "./qemu.ts";
import { drainNode, NODE_IP, prepareNodeHost, startNode, undoNodeHost, type Node } from "./node.ts";

export interface EnvOptions {
  /** Data and log directory. @default a new temp dir, removed on stop */
  dir?: string;
  /** etcd + kube-apiserver. @default true */
  kube?: boolean;
  /** kube-controller-manager (Jobs -> Pods, garbage collection). @default true when kube */
  controllerManager?: boolean;
  /** nats-server with JetStream. @default true */
  nats?: boolean;
  /** NATS asks for a user and password (Env.nats.auth), as the chart's does. @default false */
  natsAuth?: boolean;
  /** A JetStream cluster of this many nats-servers instead of one (Env.nats.nodes). */
  natsCluster?: number;
  /** docker-registry over plain HTTP. @default true */
  registry?: boolean;
  /** buildkitd (and copa on hand). Needs the registry. @default false */
  buildkit?: boolean;
  /** With buildkit: this many buildkitds (Env.buildkits), as the chart's replicas. @default 1 */
  buildkits?: number;
  /** Push the vulnerable Debian image and copa's tooling image into the registry. @default same as buildkit */
  images?: boolean;
  /** Keep `dir` after stop (for debugging a failed test). @default false, or true with KEEP_ENV=1 */
  keepDir?: boolean;
  etcdQuotaBytes?: number;
  /**
   * Multi-arch: QEMU user emulation for arm64 (binfmt_misc, undone on stop), and a
   * two-platform vulnerable index `library/debian:bookworm-vuln-multi` (amd64 + arm64)
   * with the tooling tags as indexes. Needs buildkit. @default false
   */
  multiArch?: boolean;
  /**
   * A real node: containerd, kubelet, kube-scheduler, kube-proxy and CoreDNS on a bridge
   * this environment makes, whose address (10.244.0.1) the registry, NATS and the
   * apiserver then listen on instead of 127.0.0.1, so Pods reach them. Needs root; one
   * per machine. @default false
   */
  node?: boolean;
  /** A second registry that requires basic auth (random password), known to BuildKit, holding the vulnerable image. @default false */
  authRegistry?: boolean;
}

/** The registry with basic auth, and a DOCKER_CONFIG directory holding its credentials. */
export interface AuthRegistry {
  host: string;
  username: string;
  password: string;
  /** A directory with config.json (dockerconfigjson), for DOCKER_CONFIG. */
  dockerConfigDir: string;
  dockerConfigJSON: string;
  vulnerable: string;
  vulnerableDigest: string;
  /** Its storage directory (tests count manifest revisions, or change a blob behind its back). */
  dataDir: string;
  component: Component;
}

/** What a user or script needs to reach the environment (`dev up --json`). */
export interface Endpoints {
  dir: string;
  kubeconfig?: string;
  apiserver?: string;
  /** The cluster CA's certificate file. */
  caCert?: string;
  natsURL?: string;
  natsMonitorURL?: string;
  registry?: string;
  /** The registry's storage directory (tests count manifest revisions in it). */
  registryData?: string;
  buildkitAddr?: string;
  copa?: string;
  vulnerableImage?: string;
  vulnerableDigest?: string;
  /** The real node's name, when there is one (Pods run; `dev down` drains it first). */
  node?: string;
  /** The registry that asks for a password, when there is one (its password included: keep the file private). */
  authRegistry?: Omit<AuthRegistry, "component">;
  pids: Record<string, number>;
}

export class Env implements AsyncDisposable {
  readonly dir: string;
  readonly controlPlane?: ControlPlane;
  readonly nats?: NatsServer & { nodes?: NatsServer[] };
  readonly registry?: Registry;
  readonly buildkit?: BuildKit;
  /** Every BuildKit (the first is `buildkit`). */
  readonly buildkits: BuildKit[];
  readonly images?: SeededImages;
  readonly authRegistry?: AuthRegistry;
  readonly multiArch?: SeededIndex;
  readonly node?: Node;
  /** In start order. */
  readonly components: Component[];
  #ownDir: boolean;
  #keepDir: boolean;
  #cleanups: Array<() => Promise<void>>;
  #stopped = false;

  constructor(init: {
    dir: string;
    ownDir: boolean;
    keepDir: boolean;
    components: Component[];
    controlPlane?: ControlPlane;
    nats?: NatsServer & { nodes?: NatsServer[] };
    registry?: Registry;
    buildkit?: BuildKit;
    buildkits?: BuildKit[];
    images?: SeededImages;
    authRegistry?: AuthRegistry;
    multiArch?: SeededIndex;
    node?: Node;
    /** Undone after the processes stop (host changes such as binfmt registrations). */
    cleanups?: Array<() => Promise<void>>;
  }) {
    this.dir = init.dir;
    this.#ownDir = init.ownDir;
    this.#keepDir = init.keepDir;
    this.components = init.components;
    this.controlPlane = init.controlPlane;
    this.nats = init.nats;
    this.registry = init.registry;
    this.buildkit = init.buildkit;
    this.buildkits = init.buildkits ?? (init.buildkit ? [init.buildkit] : []);
    this.images = init.images;
    this.authRegistry = init.authRegistry;
    this.multiArch = init.multiArch;
    this.node = init.node;
    this.#cleanups = init.cleanups ?? [];
  }

  get buildkitAddr(): string {
    if (!this.buildkit) throw new Error("this environment has no BuildKit");
    return this.buildkit.addr;
  }

  get kubeconfig(): string {
    if (!this.controlPlane) throw new Error("this environment has no control plane");
    return this.controlPlane.kubeconfig;
  }

  get natsURL(): string {
    if (!this.nats) throw new Error("this environment has no NATS");
    return this.nats.url;
  }

  get registryHost(): string {
    if (!this.registry) throw new Error("this environment has no registry");
    return this.registry.host;
  }

  /** A client-node KubeConfig for the admin user. */
  kubeConfig(): KubeConfig {
    return loadKubeConfig(this.kubeconfig);
  }

  endpoints(): Endpoints {
    const pids: Record<string, number> = {};
    for (const c of this.components) if (c.pid) pids[c.name] = c.pid;
    return {
      dir: this.dir,
      kubeconfig: this.controlPlane?.kubeconfig,
      apiserver: this.controlPlane?.server,
      caCert: this.controlPlane?.caCert,
      natsURL: this.nats?.url,
      natsMonitorURL: this.nats?.monitorURL,
      registry: this.registry?.host,
      registryData: this.registry?.dataDir,
      buildkitAddr: this.buildkit?.addr,
      copa: this.buildkit ? goBinary("copa") : undefined,
      vulnerableImage: this.images?.vulnerable,
      vulnerableDigest: this.images?.vulnerableDigest,
      node: this.node?.name,
      ...(this.authRegistry ? { authRegistry: (({ component: _c, ...a }) => a)(this.authRegistry) } : {}),
      pids,
    };
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    // Pods go while the kubelet still runs, so it unmounts and tears down their sandboxes.
    if (this.node && this.controlPlane)
      await Promise.resolve()
        .then(() => drainNode(this.kubeConfig()))
        .catch(() => {});
    await stopAll(this.components);
    for (const c of this.#cleanups.splice(0).reverse()) await c().catch(() => {});
    if (this.#ownDir && !this.#keepDir) await rm(this.dir, { recursive: true, force: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/**
 * An environment someone else started (the test lanes' shared one), seen through its
 * endpoints, with a NATS server of this process's own (so JetStream consumers of
 * different test files never take each other's messages). stop() stops only that NATS
 * and removes `dir`.
 */
export async function attachEnv(e: Endpoints, o: { nats?: boolean } = {}): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), "vuln-patcher-attached-"));
  const nats = (o.nats ?? true) ? await natsServer(dir) : undefined;
  if (nats) await nats.component.start();
  return new Env({
    dir,
    ownDir: true,
    keepDir: process.env.KEEP_ENV === "1",
    components: nats ? [nats.component] : [],
    controlPlane: e.kubeconfig
      ? ({ kubeconfig: e.kubeconfig, server: e.apiserver ?? "", caCert: e.caCert ?? "" } as ControlPlane)
      : undefined,
    nats,
    registry: e.registry ? ({ host: e.registry, dataDir: e.registryData ?? "" } as Registry) : undefined,
    buildkit: e.buildkitAddr ? ({ addr: e.buildkitAddr } as BuildKit) : undefined,
    images:
      e.vulnerableImage && e.vulnerableDigest
        ? { vulnerable: e.vulnerableImage, vulnerableDigest: e.vulnerableDigest }
        : undefined,
    ...(e.authRegistry ? { authRegistry: { ...e.authRegistry, component: undefined as never } } : {}),
  });
}

/** Reverse start order: the controller manager and apiserver go before etcd (see NOTES.md). */
async function stopAll(components: Component[]): Promise<void> {
  for (const c of [...components].reverse()) await c.stop();
}

export async function setup(opts: EnvOptions = {}): Promise<Env> {
  const wantKube = opts.kube ?? true;
  const tools: GoComponent[] = [];
  const wantBuildkit = opts.buildkit ?? false;
  const wantImages = opts.images ?? wantBuildkit;
  if (wantKube) tools.push("kube", "etcd");
  if (opts.nats ?? true) tools.push("nats");
  if (wantBuildkit) tools.push("buildkit", "copa", "cosign");
  if (opts.node) {
    if (!wantKube) throw new Error("node needs kube");
    tools.push("node");
  }
  if (tools.length) await ensureGoTools(tools);

  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "vuln-patcher-env-")));
  await mkdir(dir, { recursive: true });
  const started: Component[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  try {
    let address = "127.0.0.1";
    if (opts.node) {
      const record = await prepareNodeHost(dir);
      cleanups.push(() => undoNodeHost(record));
      address = NODE_IP;
    }
    const nats: (NatsServer & { nodes?: NatsServer[] }) | undefined = opts.natsCluster
      ? await natsCluster(dir, opts.natsCluster, address)
      : (opts.nats ?? true)
        ? await natsServer(dir, address, { auth: !!opts.natsAuth })
        : undefined;
    const registry =
      (opts.registry ?? true) || wantBuildkit || wantImages || opts.node
        ? await registryServer(dir, undefined, { address })
        : undefined;
    const side = [...(nats?.nodes?.map((n) => n.component) ?? [nats?.component]), registry?.component].filter(
      (c): c is Component => !!c,
    );
    started.push(...side);
    const [controlPlane] = await Promise.all([
      wantKube
        ? startControlPlane({
            dir,
            controllerManager: opts.controllerManager ?? true,
            etcdQuotaBytes: opts.etcdQuotaBytes,
            address,
            started,
          })
        : undefined,
      ...side.map((c) => c.start()),
    ]);
    const node = opts.node
      ? await startNode({
          dir,
          kc: loadKubeConfig(controlPlane!.kubeconfig),
          server: controlPlane!.server,
          ca: controlPlane!.ca,
          registry: registry!.host,
          started,
        })
      : undefined;
    let authReg: { registry: Registry; auth: RegistryAuth } | undefined;
    if (opts.authRegistry) {
      const auth = await makeRegistryAuth(dir);
      const r = await registryServer(dir, join(dir, "registry-auth"), { name: "docker-registry-auth", auth });
      started.push(r.component);
      await r.component.start();
      authReg = { registry: r, auth };
    }
    if (opts.multiArch) {
      if (!wantBuildkit) throw new Error("multiArch needs buildkit");
      // Before buildkitd starts, so it finds the emulator for linux/arm64.
      const emulation = await ensureEmulation(["arm64"]);
      cleanups.push(() => emulation.undo());
    }
    const buildkits = wantBuildkit
      ? await Promise.all(
          Array.from({ length: opts.buildkits ?? 1 }, (_, i) =>
            buildkitServer(dir, registry!.host, authReg ? [authReg.registry.host] : [], i),
          ),
        )
      : [];
    started.push(...buildkits.map((b) => b.component));
    await Promise.all(buildkits.map((b) => b.component.start()));
    const buildkit = buildkits[0];
    const images = wantImages ? await seedRegistry(registry!.host) : undefined;
    const multiArch = opts.multiArch ? await seedMultiArch(registry!.host) : undefined;
    let authRegistry: AuthRegistry | undefined;
    if (authReg) {
      const host = authReg.registry.host;
      const dockerConfigDir = join(dir, "auth-docker-config");
      await mkdir(dockerConfigDir, { recursive: true, mode: 0o700 });
      const json = dockerConfigJSON(host, authReg.auth);
      await writeFile(join(dockerConfigDir, "config.json"), json, { mode: 0o600 });
      const seeded = await seedVulnerable(host, join(dockerConfigDir, "config.json"));
      authRegistry = {
        host,
        username: authReg.auth.username,
        password: authReg.auth.password,
        dockerConfigDir,
        dockerConfigJSON: json,
        vulnerable: seeded.vulnerable,
        vulnerableDigest: seeded.vulnerableDigest,
        dataDir: authReg.registry.dataDir,
        component: authReg.registry.component,
      };
    }
    return new Env({
      dir,
      ownDir,
      keepDir: opts.keepDir ?? process.env.KEEP_ENV === "1",
      components: started,
      controlPlane,
      nats,
      registry,
      buildkit,
      buildkits,
      images,
      authRegistry,
      multiArch,
      node,
      cleanups,
    });
  } catch (err) {
    if (opts.node && started.some((c) => c.name === "kubelet"))
      await drainNode(loadKubeConfig(join(dir, "kubeconfig")), 15_000).catch(() => {});
    await stopAll(started);
    for (const c of cleanups.reverse()) await c().catch(() => {});
    if (ownDir && process.env.KEEP_ENV !== "1")
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}
