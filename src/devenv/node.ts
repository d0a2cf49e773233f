// A real node for the environment: containerd 2.x on Debian's runc, the kubelet,
// kube-scheduler and kube-proxy of the apiserver's Kubernetes version, CoreDNS, Debian's
// bridge CNI plugin on a bridge this environment makes (its address is the node IP,
// where the registry, NATS and the apiserver listen too), a pause image made here, and
// a proxy to the Debian mirror for copa's apt inside the BuildKit Pod. Everything lives under
// the environment's directory, is stopped by pid, and every change to the host (the
// bridge, ip_forward, mounts, cgroups, iptables chains) is undone on stop, including
// after a failed start. Facts behind the settings: ../shared/reference/research/kubelet-real.md.
//
// One node per machine: the kubelet and containerd hard-code a few host paths
// (/var/lib/kubelet/device-plugins, /run/containerd/s), so a second node would collide.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rm, rmdir, writeFile, copyFile, chmod } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  RbacAuthorizationV1Api,
  type KubeConfig,
} from "@kubernetes/client-node";
import { Component } from "./component.ts";
import { makeLeaf, type CertPair } from "./certs.ts";
import { kubeconfigYAML } from "./controlplane.ts";
import { freePort, httpStatus } from "./net.ts";
import { cacheDir, goBinary, systemBinary } from "./tools.ts";
import { DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR, pushLayout } from "./images.ts";
import { unmountUnder } from "./buildkit.ts";
import { waitFor } from "./wait.ts";

const run = promisify(execFile);

export const NODE_NAME = "vp-node";
export const BRIDGE = "vpbr0";
export const POD_CIDR = "10.244.0.0/24";
/** The bridge's address: the node IP, reachable from the host and from Pods, from nowhere else. */
export const NODE_IP = "10.244.0.1";
/**
 * The node's HTTPS proxy for copa's library updates (pip and npm inside the BuildKit Pod):
 * the mirror proxy, tunnelling to the package registries below and nowhere else.
 */
export const NODE_HTTPS_PROXY = `http://${NODE_IP}:80`;
const LIBRARY_REGISTRIES = ["pypi.org:443", "files.pythonhosted.org:443", "registry.npmjs.org:443"];
const TABLES = ["filter", "nat", "mangle", "raw"];
/** Directories outside the environment that the node's components make (and we remove if they did). */
const HOST_DIRS = [
  "/var/lib/kubelet",
  "/var/lib/cni",
  "/run/containerd",
  "/var/log/containers",
  "/var/log/pods",
];
/** Kernel settings the kubelet sets for itself (protectKernelDefaults off): restored on stop. */
const SYSCTLS = [
  "kernel/panic",
  "kernel/panic_on_oops",
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
];

async function readSysctls(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const k of SYSCTLS) {
    const v = await readFile(`/proc/sys/${k}`, "utf8").catch(() => undefined);
    if (v !== undefined) out[k] = v.trim();
  }
  return out;
}

export interface NodeOptions {
  dir: string;
  kc: KubeConfig;
  server: string;
  ca: CertPair;
  /** host:port of the environment's registry (plain HTTP, on the node's address): images and the pause image. */
  registry: string;
  started: Component[];
}

export interface Node {
  name: string;
  ip: string;
  /** Milliseconds from start to Ready. */
  readyMs: number;
}

/**
 * What the host looked like before the node, so every change can be undone later, also
 * by another process (`dev down` reads it back from `<dir>/node-host.json`).
 */
export interface NodeHostRecord {
  dir: string;
  bridgeMade: boolean;
  ipForwardBefore: string;
  chainsBefore: string[];
  /** Host paths the kubelet, libcni and containerd hard-code, made by this node. */
  hostDirsMade?: string[];
  /** Kernel settings the kubelet changes (/proc/sys paths), as they were. */
  sysctlsBefore?: Record<string, string>;
  /** The process that started the node; a dead owner's node is reclaimed by the next one. */
  owner?: number;
  /** `dev up` keeps the node beyond its owner: never reclaimed, only `dev down` ends it. */
  kept?: boolean;
}

export const NODE_HOST_RECORD = "node-host.json";

async function sh(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await run(cmd, args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

async function quiet(cmd: string, args: string[]): Promise<void> {
  await run(cmd, args).catch(() => {});
}

/** KUBE-* and CNI-* chains per table and family, to tell ours from what was there. */
async function chains(): Promise<Set<string>> {
  const out = new Set<string>();
  for (const bin of ["iptables", "ip6tables"])
    for (const t of TABLES) {
      const text = await sh(bin, ["-w", "5", "-t", t, "-S"]).catch(() => "");
      for (const m of text.matchAll(/^-N ((KUBE|CNI|VP)-\S+)$/gm)) out.add(`${bin} ${t} ${m[1]}`);
    }
  return out;
}

/**
 * Remove the chains that were not there before: flush them (which drops their jumps to
 * each other), delete the jumps to them from the other chains by rule number (kube-proxy's
 * rules carry quoted comments, so a rule is not safely rebuilt from its text), then
 * delete them.
 */
async function removeChains(before: Set<string>): Promise<void> {
  const now = [...(await chains())].filter((c) => !before.has(c));
  const byTable = new Map<string, Set<string>>();
  for (const c of now) {
    const [bin, table, chain] = c.split(" ") as [string, string, string];
    const key = `${bin} ${table}`;
    if (!byTable.has(key)) byTable.set(key, new Set());
    byTable.get(key)!.add(chain);
  }
  for (const [key, ours] of byTable) {
    const [bin, table] = key.split(" ") as [string, string];
    for (const chain of ours) await quiet(bin, ["-w", "5", "-t", table, "-F", chain]);
    const rules = await sh(bin, ["-w", "5", "-t", table, "-S"]).catch(() => "");
    const numbered = new Map<string, number[]>();
    const count = new Map<string, number>();
    for (const line of rules.split("\n")) {
      const m = /^-A (\S+) (.*)$/.exec(line);
      if (!m) continue;
      const chain = m[1]!;
      const n = (count.get(chain) ?? 0) + 1;
      count.set(chain, n);
      const target = / -[jg] (\S+)/.exec(" " + m[2])?.[1];
      if (target && ours.has(target) && !ours.has(chain))
        numbered.set(chain, [...(numbered.get(chain) ?? []), n]);
    }
    for (const [chain, ns] of numbered)
      for (const n of ns.sort((a, b) => b - a))
        await quiet(bin, ["-w", "5", "-t", table, "-D", chain, String(n)]);
    for (const chain of ours) await quiet(bin, ["-w", "5", "-t", table, "-X", chain]);
  }
}

async function mountsUnder(prefix: string): Promise<string[]> {
  const text = await readFile("/proc/self/mounts", "utf8");
  return text
    .split("\n")
    .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((m): m is string => !!m && (m === prefix || m.startsWith(prefix + "/")))
    .sort((a, b) => b.length - a.length);
}

/** rmdir a cgroup tree depth-first (a cgroup directory goes only when empty of children). */
async function rmCgroupTree(path: string): Promise<void> {
  if (!existsSync(path)) return;
  for (const e of await readdir(path, { withFileTypes: true }).catch(() => []))
    if (e.isDirectory()) await rmCgroupTree(join(path, e.name));
  await rmdir(path).catch(() => {});
}

async function kubepodsCgroups(): Promise<string[]> {
  const root = "/sys/fs/cgroup";
  const out: string[] = [];
  for (const c of await readdir(root).catch(() => [] as string[])) {
    const p = join(root, c, "kubepods");
    if (existsSync(p)) out.push(p);
  }
  if (existsSync(join(root, "kubepods"))) out.push(join(root, "kubepods"));
  return out;
}

/** The host state a node changes, for the test that checks it is all undone. */
export async function hostState(dir: string): Promise<{
  mounts: string[];
  bridge: boolean;
  chains: string[];
  cgroups: string[];
  ipForward: string;
  hostDirs: string[];
  processes: number[];
  sysctls: Record<string, string>;
}> {
  return {
    mounts: await mountsUnder(dir),
    bridge: existsSync(`/sys/class/net/${BRIDGE}`),
    chains: [...(await chains())],
    cgroups: await kubepodsCgroups(),
    ipForward: (await readFile("/proc/sys/net/ipv4/ip_forward", "utf8")).trim(),
    hostDirs: HOST_DIRS.filter((d) => existsSync(d)),
    processes: [...(await podPids()), ...(await pidsMentioning([dir]))],
    sysctls: await readSysctls(),
  };
}

/** The machine-wide copy of the record: one node per machine, so a crashed one is found. */
function machineRecordPath(): string {
  return join(cacheDir(), "node-host.json");
}

/** Pids of processes whose command line mentions `needle` (our components name their directory). */
async function pidsMentioning(dirs: string[]): Promise<number[]> {
  if (dirs.some((d) => !d.startsWith("/") || d === "/"))
    throw new Error(`not an environment directory: ${dirs}`);
  // A directory as a whole path in an argument (`--data-dir=DIR/etcd`, `-conf DIR/x`), never
  // a prefix of another name (DIR-2).
  const patterns = dirs.map((d) => new RegExp(`(^|[=:,])${d.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(/|$)`));
  const out: number[] = [];
  for (const e of await readdir("/proc").catch(() => [] as string[])) {
    const pid = Number(e);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (args.some((a) => patterns.some((p) => p.test(a)))) out.push(pid);
  }
  return out;
}

/** Wait (up to `ms`) until none of `pids` is alive. */
async function gone(pids: number[], ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (pids.some((p) => existsSync(`/proc/${p}`)) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
}

/** Pids in the node's Pod cgroups: containers whose shim is gone are still there. */
async function podPids(): Promise<number[]> {
  const out = new Set<number>();
  const walk = async (dir: string): Promise<void> => {
    const procs = await readFile(join(dir, "cgroup.procs"), "utf8").catch(() => "");
    for (const l of procs.split("\n")) if (l.trim()) out.add(Number(l));
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => []))
      if (e.isDirectory()) await walk(join(dir, e.name));
  };
  for (const c of await kubepodsCgroups()) await walk(c);
  return [...out];
}

function kill(pids: number[]): void {
  for (const pid of pids)
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone already */
    }
}

/**
 * A node left behind by a process that died without stopping it (SIGKILL, a crash): kill
 * its processes (by the directory their command lines name, and every process in the Pod
 * cgroups), then undo its host changes. Nothing happens when no record is there.
 */
export async function reclaimStaleNode(): Promise<boolean> {
  const text = await readFile(machineRecordPath(), "utf8").catch(() => undefined);
  if (!text) return false;
  const record = JSON.parse(text) as NodeHostRecord;
  const ownerAlive = record.owner !== undefined && existsSync(`/proc/${record.owner}`);
  if (record.kept || ownerAlive)
    throw new Error(
      `a node is up already (environment ${record.dir}${record.kept ? ", kept by `dev up`" : `, process ${record.owner}`}): one node per machine; 'vuln-patcher dev down' it first`,
    );
  const pids = await pidsMentioning([record.dir]);
  kill(pids);
  await gone(pids);
  await undoNodeHost(record);
  return true;
}

/** `dev up`: the node outlives the process that made it; only `dev down` ends it. */
export async function markNodeKept(dir: string): Promise<void> {
  const text = await readFile(machineRecordPath(), "utf8").catch(() => undefined);
  if (!text) return;
  const record = JSON.parse(text) as NodeHostRecord;
  if (record.dir !== dir) return;
  await writeFile(machineRecordPath(), JSON.stringify({ ...record, kept: true }, null, 2) + "\n");
}

/**
 * Before anything listens on the node's address: the bridge with the node IP on it (the
 * CNI bridge plugin adopts it), and a record of the host as it was. A node a crashed
 * process left behind is reclaimed first.
 */
export async function prepareNodeHost(dir: string): Promise<NodeHostRecord> {
  if (process.getuid?.() !== 0) throw new Error("a real node needs root (containerd, kubelet, a bridge)");
  await reclaimStaleNode();
  // Another Kubernetes on this machine would share cgroups, chains and host paths with us.
  const foreign = [
    ...(await kubepodsCgroups()).map((c) => `cgroup ${c}`),
    ...[...(await chains())].filter((c) => c.split(" ")[2]!.startsWith("KUBE-")).slice(0, 3),
    ...(existsSync(`/sys/class/net/${BRIDGE}`) ? [`bridge ${BRIDGE}`] : []),
    ...((await sh("ip", ["-4", "route", "show", POD_CIDR]).catch(() => "")).trim()
      ? [`a route to ${POD_CIDR}`]
      : []),
  ];
  if (foreign.length)
    throw new Error(
      `this machine already runs Kubernetes or another node (${foreign.join(", ")}): the environment's node needs it to itself`,
    );
  const record: NodeHostRecord = {
    dir,
    bridgeMade: true,
    ipForwardBefore: (await readFile("/proc/sys/net/ipv4/ip_forward", "utf8")).trim(),
    chainsBefore: [...(await chains())],
    hostDirsMade: HOST_DIRS.filter((d) => !existsSync(d)),
    sysctlsBefore: await readSysctls(),
    owner: process.pid,
  };
  // The record first: whatever happens next, it says what to undo.
  await writeFile(join(dir, NODE_HOST_RECORD), JSON.stringify(record, null, 2) + "\n");
  await mkdir(dirname(machineRecordPath()), { recursive: true });
  await writeFile(machineRecordPath(), JSON.stringify(record, null, 2) + "\n");
  try {
    await sh("ip", ["link", "add", BRIDGE, "type", "bridge"]);
    await sh("ip", ["addr", "add", `${NODE_IP}/24`, "dev", BRIDGE]);
    await sh("ip", ["link", "set", BRIDGE, "up"]);
    await fenceNode();
  } catch (err) {
    await undoNodeHost(record);
    throw err;
  }
  return record;
}

/**
 * The node's address is local to this machine, so (weak host model) a neighbour that
 * routes 10.244.0.1 here could reach what listens there: accept it only from loopback and
 * the bridge, and let nothing from the Pods be forwarded off the bridge. Our own chain
 * (VP-NODE), removed with the others on stop.
 */
async function fenceNode(): Promise<void> {
  const ipt = (args: string[]) => sh("iptables", ["-w", "5", ...args]);
  await ipt(["-N", "VP-NODE"]);
  await ipt(["-A", "VP-NODE", "-d", `${NODE_IP}/32`, "-i", "lo", "-j", "RETURN"]);
  await ipt(["-A", "VP-NODE", "-d", `${NODE_IP}/32`, "-i", BRIDGE, "-j", "RETURN"]);
  await ipt(["-A", "VP-NODE", "-d", `${NODE_IP}/32`, "-j", "DROP"]);
  await ipt(["-I", "INPUT", "1", "-j", "VP-NODE"]);
  await ipt(["-N", "VP-NODE-FORWARD"]);
  await ipt(["-A", "VP-NODE-FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN"]);
  await ipt(["-A", "VP-NODE-FORWARD", "-i", BRIDGE, "-j", "DROP"]);
  await ipt(["-A", "VP-NODE-FORWARD", "-o", BRIDGE, "-j", "DROP"]);
  await ipt(["-I", "FORWARD", "1", "-j", "VP-NODE-FORWARD"]);
}

/** Undo what the node did to the host; run after its processes have stopped. Idempotent. */
export async function undoNodeHost(record: NodeHostRecord): Promise<void> {
  for (const m of await mountsUnder(record.dir)) await quiet("umount", ["-l", m]);
  // The machine-wide record is written before the first host change and removed after the
  // last undo. Without it, or naming another node (this one was reclaimed, and the host
  // state is that node's now), there is nothing of ours to undo.
  const machine = await readFile(machineRecordPath(), "utf8").catch(() => "");
  if (!machine || (JSON.parse(machine) as NodeHostRecord).dir !== record.dir) return;
  // Containers and shims that outlived containerd (a Pod the drain did not get to).
  const left = [...(await podPids()), ...(await pidsMentioning([join(record.dir, "node", "containerd")]))];
  kill(left);
  await gone(left);
  for (const m of await mountsUnder(record.dir)) await quiet("umount", ["-l", m]);
  for (const c of await kubepodsCgroups()) await rmCgroupTree(c);
  if (record.bridgeMade && existsSync(`/sys/class/net/${BRIDGE}`)) await quiet("ip", ["link", "del", BRIDGE]);
  await writeFile("/proc/sys/net/ipv4/ip_forward", record.ipForwardBefore + "\n").catch(() => {});
  for (const [k, v] of Object.entries(record.sysctlsBefore ?? {}))
    await writeFile(`/proc/sys/${k}`, v + "\n").catch(() => {});
  await removeChains(new Set(record.chainsBefore));
  // libcni's result cache (a host path it hard-codes): our network's entries only.
  for (const f of await readdir("/var/lib/cni/results").catch(() => [] as string[]))
    if (f.startsWith("vp-net-")) await rm(join("/var/lib/cni/results", f), { force: true }).catch(() => {});
  for (const d of record.hostDirsMade ?? []) await rm(d, { recursive: true, force: true }).catch(() => {});
  await rm(machineRecordPath(), { force: true });
}

/** A pause image from the pause program, pushed to the registry as pause:3.10. */
async function pushPauseImage(dir: string, registry: string): Promise<string> {
  const umoci = systemBinary("umoci", "umoci");
  const layout = join(dir, "pause-image");
  const bundle = join(dir, "pause-bundle");
  await rm(layout, { recursive: true, force: true });
  await rm(bundle, { recursive: true, force: true });
  await sh(umoci, ["init", "--layout", layout]);
  await sh(umoci, ["new", "--image", `${layout}:pause`]);
  await sh(umoci, ["unpack", "--image", `${layout}:pause`, bundle]);
  await copyFile(goBinary("pause"), join(bundle, "rootfs", "pause"));
  await chmod(join(bundle, "rootfs", "pause"), 0o755);
  await sh(umoci, ["repack", "--image", `${layout}:pause`, bundle]);
  await sh(umoci, [
    "config",
    "--image",
    `${layout}:pause`,
    "--config.entrypoint",
    "/pause",
    "--config.user",
    "65535:65535",
  ]);
  await rm(bundle, { recursive: true, force: true });
  await pushLayout(layout, "pause", registry, ["pause:3.10"]);
  return `${registry}/pause:3.10`;
}

/** Host names of the Debian mirrors the environment's images name (their sources.list). */
function mirrorRoutes(): Array<{ host: string; prefix: string; upstream: string }> {
  return [DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR].map((u) => {
    const url = new URL(u);
    return { host: url.hostname, prefix: url.pathname.replace(/\/$/, ""), upstream: u };
  });
}

/**
 * containerd, the kubelet, kube-scheduler, kube-proxy (Services), CoreDNS (Service
 * names) and the Debian mirror proxy, all on the node's address or loopback; resolves
 * when the node is Ready. Each process is pushed to `o.started` before it starts.
 */
export async function startNode(o: NodeOptions): Promise<Node> {
  const t0 = Date.now();
  const base = join(o.dir, "node");
  const pki = join(o.dir, "pki");
  await mkdir(base, { recursive: true });
  const launch = async (c: Component) => {
    o.started.push(c);
    await c.start();
    return c;
  };

  const [nodeClient, serving, scheduler, proxy, dns] = await Promise.all([
    makeLeaf(pki, o.ca, "node", { commonName: `system:node:${NODE_NAME}`, organizations: ["system:nodes"] }),
    makeLeaf(pki, o.ca, "kubelet-serving", {
      commonName: NODE_NAME,
      serverSANs: [`DNS:${NODE_NAME}`, `IP:${NODE_IP}`],
    }),
    makeLeaf(pki, o.ca, "kube-scheduler", { commonName: "system:kube-scheduler" }),
    makeLeaf(pki, o.ca, "kube-proxy", { commonName: "system:kube-proxy" }),
    makeLeaf(pki, o.ca, "coredns", { commonName: "vuln-patcher:coredns" }),
  ]);
  const pause = await pushPauseImage(base, o.registry);

  // containerd: state, sockets and runc root under the environment's directory.
  const ctrd = join(base, "containerd");
  const cni = join(base, "cni");
  await mkdir(join(ctrd, "certs.d", o.registry), { recursive: true });
  await mkdir(join(cni, "net.d"), { recursive: true });
  await writeFile(
    join(ctrd, "certs.d", o.registry, "hosts.toml"),
    `server = "http://${o.registry}"\n[host."http://${o.registry}"]\n  capabilities = ["pull", "resolve"]\n`,
  );
  const sock = join(ctrd, "containerd.sock");
  await writeFile(
    join(ctrd, "config.toml"),
    [
      "version = 3",
      `root = "${join(ctrd, "root")}"`,
      `state = "${join(ctrd, "state")}"`,
      'disabled_plugins = ["io.containerd.nri.v1.nri"]',
      "[grpc]",
      `  address = "${sock}"`,
      "[ttrpc]",
      `  address = "${sock}.ttrpc"`,
      '[plugins."io.containerd.cri.v1.images"]',
      '  snapshotter = "overlayfs"',
      '  [plugins."io.containerd.cri.v1.images".pinned_images]',
      `    sandbox = "${pause}"`,
      '  [plugins."io.containerd.cri.v1.images".registry]',
      `    config_path = "${join(ctrd, "certs.d")}"`,
      '[plugins."io.containerd.cri.v1.runtime"]',
      // This machine has no CAP_SYS_RESOURCE: a negative oom_score_adj fails every sandbox.
      "  restrict_oom_score_adj = true",
      "  netns_mounts_under_state_dir = true",
      '  [plugins."io.containerd.cri.v1.runtime".containerd]',
      '    default_runtime_name = "runc"',
      '    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]',
      '      runtime_type = "io.containerd.runc.v2"',
      '      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]',
      `        BinaryName = "${systemBinary("runc", "runc")}"`,
      "        SystemdCgroup = false",
      `        Root = "${join(ctrd, "runc")}"`,
      '  [plugins."io.containerd.cri.v1.runtime".cni]',
      '    bin_dirs = ["/usr/lib/cni"]',
      `    conf_dir = "${join(cni, "net.d")}"`,
      "",
    ].join("\n"),
  );
  // No portmap and no masquerading: Pods reach the node's address and each other, and
  // nothing is translated towards the host's other interfaces.
  await writeFile(
    join(cni, "net.d", "10-vp.conflist"),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "vp-net",
      plugins: [
        {
          type: "bridge",
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: POD_CIDR, gateway: NODE_IP }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: join(cni, "ipam"),
          },
        },
      ],
    }),
  );
  const shimDir = dirname(goBinary("containerd"));
  await launch(
    new Component(
      {
        name: "containerd",
        command: goBinary("containerd"),
        args: ["--config", join(ctrd, "config.toml")],
        env: { ...process.env, PATH: `${shimDir}:${process.env.PATH ?? ""}` },
        logDir: o.dir,
        ready: async () => existsSync(sock),
      },
      () => unmountUnder(ctrd),
    ),
  );

  // CoreDNS: Service names for Pods, and the Debian mirror's host name -> the node.
  const routes = mirrorRoutes();
  const dnsKubeconfig = join(base, "coredns.kubeconfig");
  await writeFile(dnsKubeconfig, kubeconfigYAML(o.server, o.ca.cert, "vuln-patcher:coredns", dns), {
    mode: 0o600,
  });
  await grantCoreDNS(o.kc);
  const dnsHealth = await freePort();
  await writeFile(
    join(base, "Corefile"),
    [
      ".:53 {",
      `  bind ${NODE_IP}`,
      "  errors",
      `  health 127.0.0.1:${dnsHealth}`,
      "  hosts {",
      ...[...new Set(routes.map((r) => r.host))].map((h) => `    ${NODE_IP} ${h}`),
      "    fallthrough",
      "  }",
      "  kubernetes cluster.local in-addr.arpa ip6.arpa {",
      `    kubeconfig ${dnsKubeconfig} vuln-patcher-dev`,
      "  }",
      // No forward: a name outside the cluster gets no answer from outside the machine.
      "}",
      "",
    ].join("\n"),
  );
  await launch(
    new Component({
      name: "coredns",
      command: goBinary("coredns"),
      args: ["-conf", join(base, "Corefile")],
      cwd: base,
      logDir: o.dir,
      ready: async () => (await httpStatus(`http://127.0.0.1:${dnsHealth}/health`)) === 200,
    }),
  );
  await launch(
    new Component({
      name: "mirror-proxy",
      command: process.execPath,
      args: [
        // Beside this file: .ts from source, .js once compiled (dist/).
        fileURLToPath(import.meta.url).replace(/node\.(ts|js)$/, "mirror-proxy.$1"),
        `--owner-dir=${o.dir}`,
        `--connect=${LIBRARY_REGISTRIES.join(",")}`,
        `${NODE_IP}:80`,
        ...routes.map((r) => `${r.prefix}=${r.upstream}`),
      ],
      logDir: o.dir,
      ready: async () => (await httpStatus(`http://${NODE_IP}:80/healthz`)) === 200,
    }),
  );

  // kubelet
  const kl = join(base, "kubelet");
  await mkdir(kl, { recursive: true });
  const nodeKubeconfig = join(kl, "kubeconfig");
  await writeFile(
    nodeKubeconfig,
    kubeconfigYAML(o.server, o.ca.cert, `system:node:${NODE_NAME}`, nodeClient),
    {
      mode: 0o600,
    },
  );
  const healthz = await freePort();
  await writeFile(
    join(kl, "config.yaml"),
    [
      "apiVersion: kubelet.config.k8s.io/v1beta1",
      "kind: KubeletConfiguration",
      "failCgroupV1: false",
      "failSwapOn: false",
      "cgroupDriver: cgroupfs",
      // Otherwise the kubelet adds KUBE-FIREWALL to the host's INPUT and OUTPUT.
      "makeIPTablesUtilChains: false",
      `containerRuntimeEndpoint: unix://${sock}`,
      "authentication:",
      "  anonymous: {enabled: false}",
      "  webhook: {enabled: true}",
      `  x509: {clientCAFile: ${o.ca.cert}}`,
      "authorization: {mode: Webhook}",
      `tlsCertFile: ${serving.cert}`,
      `tlsPrivateKeyFile: ${serving.key}`,
      `address: ${NODE_IP}`,
      "healthzBindAddress: 127.0.0.1",
      `healthzPort: ${healthz}`,
      "readOnlyPort: 0",
      `podLogsDir: ${join(kl, "pod-logs")}`,
      "clusterDomain: cluster.local",
      `clusterDNS: [${NODE_IP}]`,
      "resolvConf: /etc/resolv.conf",
      "serializeImagePulls: false",
      // Images come from the environment's registry; never evict them mid-test.
      "imageGCHighThresholdPercent: 100",
      "evictionHard: {}",
      "",
    ].join("\n"),
  );
  await launch(
    new Component({
      name: "kubelet",
      command: goBinary("kubelet"),
      args: [
        `--config=${join(kl, "config.yaml")}`,
        `--kubeconfig=${nodeKubeconfig}`,
        `--root-dir=${join(kl, "root")}`,
        `--hostname-override=${NODE_NAME}`,
        `--node-ip=${NODE_IP}`,
        "--v=1",
      ],
      logDir: o.dir,
      startTimeoutMs: 60_000,
      ready: async () => (await httpStatus(`http://127.0.0.1:${healthz}/healthz`)) === 200,
    }),
  );

  const schedConfig = join(base, "kube-scheduler.kubeconfig");
  await writeFile(schedConfig, kubeconfigYAML(o.server, o.ca.cert, "system:kube-scheduler", scheduler), {
    mode: 0o600,
  });
  const schedPort = await freePort();
  const proxyConfig = join(base, "kube-proxy.kubeconfig");
  await writeFile(proxyConfig, kubeconfigYAML(o.server, o.ca.cert, "system:kube-proxy", proxy), {
    mode: 0o600,
  });
  const [proxyHealth, proxyMetrics] = [await freePort(), await freePort()];
  await Promise.all([
    launch(
      new Component({
        name: "kube-scheduler",
        command: goBinary("kube-scheduler"),
        args: [
          `--kubeconfig=${schedConfig}`,
          `--authentication-kubeconfig=${schedConfig}`,
          `--authorization-kubeconfig=${schedConfig}`,
          "--leader-elect=false",
          "--bind-address=127.0.0.1",
          `--secure-port=${schedPort}`,
          "--v=0",
        ],
        logDir: o.dir,
        startTimeoutMs: 60_000,
        ready: async () => (await httpStatus(`https://127.0.0.1:${schedPort}/healthz`)) === 200,
      }),
    ),
    launch(
      new Component({
        name: "kube-proxy",
        command: goBinary("kube-proxy"),
        args: [
          `--kubeconfig=${proxyConfig}`,
          "--proxy-mode=iptables",
          `--cluster-cidr=${POD_CIDR}`,
          `--hostname-override=${NODE_NAME}`,
          // Leave the host's conntrack settings and loopback routing alone.
          "--conntrack-max-per-core=0",
          "--conntrack-tcp-timeout-established=0",
          "--conntrack-tcp-timeout-close-wait=0",
          "--iptables-localhost-nodeports=false",
          `--nodeport-addresses=${NODE_IP}/32`,
          `--healthz-bind-address=127.0.0.1:${proxyHealth}`,
          `--metrics-bind-address=127.0.0.1:${proxyMetrics}`,
          "--v=0",
        ],
        logDir: o.dir,
        startTimeoutMs: 60_000,
        ready: async () => (await httpStatus(`http://127.0.0.1:${proxyHealth}/healthz`)) > 0,
      }),
    ),
  ]);

  const core = o.kc.makeApiClient(CoreV1Api);
  await waitFor(
    `node ${NODE_NAME} Ready`,
    async () => {
      const n = await core.readNode({ name: NODE_NAME }).catch(() => undefined);
      return n?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? n : undefined;
    },
    120_000,
    250,
  );
  return { name: NODE_NAME, ip: NODE_IP, readyMs: Date.now() - t0 };
}

/** Read-only access for CoreDNS's kubernetes plugin (what CoreDNS's own manifests grant). */
async function grantCoreDNS(kc: KubeConfig): Promise<void> {
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const name = "vuln-patcher:coredns";
  await rbac
    .createClusterRole({
      body: {
        metadata: { name },
        rules: [
          { apiGroups: [""], resources: ["services", "namespaces"], verbs: ["list", "watch"] },
          { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
        ],
      },
    })
    .catch(ignoreConflict);
  await rbac
    .createClusterRoleBinding({
      body: {
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name }],
      },
    })
    .catch(ignoreConflict);
}

function ignoreConflict(err: unknown): void {
  if ((err as { code?: number }).code !== 409) throw err;
}

/**
 * Before the node's processes stop: no more Pods (Deployments, StatefulSets, DaemonSets,
 * CronJobs, ReplicaSets and Jobs deleted,
 * every Pod deleted with grace 0, again until none is left) and no container process,
 * while the kubelet still runs, so it tears down sandboxes, mounts and network
 * namespaces itself. What is left after `timeoutMs` is killed by undoNodeHost.
 */
export async function drainNode(kc: KubeConfig, timeoutMs = 30_000): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  type Named = { metadata?: { namespace?: string; name?: string } };
  /** Every object a list returns, deleted one by one; a failure to list or delete is not this drain's business. */
  const deleteAll = async <T extends Named>(
    list: () => Promise<{ items: T[] }>,
    del: (ns: string, name: string) => Promise<unknown>,
  ) => {
    const got = await list().catch(() => undefined);
    for (const o of got?.items ?? []) await del(o.metadata!.namespace!, o.metadata!.name!).catch(() => {});
  };
  const orphan = { propagationPolicy: "Orphan" };
  // Every owner of Pods first (Deployments and their ReplicaSets, StatefulSets such as the
  // chart's BuildKit, DaemonSets, CronJobs and Jobs), or new Pods replace the ones deleted
  // below and the drain runs into its time limit.
  await deleteAll(
    () => apps.listDeploymentForAllNamespaces(),
    (namespace, name) => apps.deleteNamespacedDeployment({ namespace, name, ...orphan }),
  );
  await deleteAll(
    () => apps.listStatefulSetForAllNamespaces(),
    (namespace, name) => apps.deleteNamespacedStatefulSet({ namespace, name, ...orphan }),
  );
  await deleteAll(
    () => apps.listDaemonSetForAllNamespaces(),
    (namespace, name) => apps.deleteNamespacedDaemonSet({ namespace, name, ...orphan }),
  );
  await deleteAll(
    () => batch.listCronJobForAllNamespaces(),
    (namespace, name) => batch.deleteNamespacedCronJob({ namespace, name }),
  );
  await deleteAll(
    () => apps.listReplicaSetForAllNamespaces(),
    (namespace, name) => apps.deleteNamespacedReplicaSet({ namespace, name, ...orphan }),
  );
  await deleteAll(
    () => batch.listJobForAllNamespaces(),
    (namespace, name) => batch.deleteNamespacedJob({ namespace, name, propagationPolicy: "Background" }),
  );
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const left = await core.listPodForAllNamespaces().catch(() => undefined);
    if (left && left.items.length === 0 && (await podPids()).length === 0) break;
    for (const p of left?.items ?? [])
      await core
        .deleteNamespacedPod({
          namespace: p.metadata!.namespace!,
          name: p.metadata!.name!,
          gracePeriodSeconds: 0,
        })
        .catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
  }
}
