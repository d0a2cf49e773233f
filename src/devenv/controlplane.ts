// etcd + kube-apiserver + kube-controller-manager, started the way envtest starts
// them (secure serving, client-cert admin, RBAC, service-account keys), plus the
// controller manager so Jobs create Pods and ownerReference GC works.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Component } from "./component.ts";
import { freePort, httpStatus } from "./net.ts";
import { makeCA, makeLeaf, type CertPair } from "./certs.ts";
import { goBinary } from "./tools.ts";
import { readFileSync } from "node:fs";

export interface ControlPlane {
  etcd: Component;
  apiserver: Component;
  controllerManager?: Component;
  /** https://ADDRESS:PORT */
  server: string;
  etcdURL: string;
  /** Admin kubeconfig (system:masters). */
  kubeconfig: string;
  caCert: string;
  ca: CertPair;
}

export interface ControlPlaneOptions {
  dir: string;
  /** Run kube-controller-manager too. @default true */
  controllerManager?: boolean;
  /** etcd backend quota; raise it for the scale benchmarks. @default 8 GiB */
  etcdQuotaBytes?: number;
  /**
   * Where the apiserver listens and what it advertises. @default 127.0.0.1. A real node
   * puts it on the node's bridge address, so Pods reach it (through the `kubernetes`
   * Service) and it reaches the kubelet.
   */
  address?: string;
  /** Each component is pushed here before it starts, so a caller can stop them all if a later one fails. */
  started: Component[];
}

async function launch(started: Component[], c: Component): Promise<Component> {
  started.push(c);
  return c.start();
}

function b64(file: string): string {
  return readFileSync(file).toString("base64");
}

/** A kubeconfig with embedded credentials, so it can be copied anywhere. */
export function kubeconfigYAML(server: string, caCert: string, user: string, client: CertPair): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: vuln-patcher-dev",
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(caCert)}`,
    "users:",
    `- name: ${user}`,
    "  user:",
    `    client-certificate-data: ${b64(client.cert)}`,
    `    client-key-data: ${b64(client.key)}`,
    "contexts:",
    "- name: vuln-patcher-dev",
    "  context:",
    "    cluster: vuln-patcher-dev",
    `    user: ${user}`,
    "current-context: vuln-patcher-dev",
    "",
  ].join("\n");
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const pki = join(opts.dir, "pki");
  await mkdir(pki, { recursive: true });
  const ca = await makeCA(pki, "ca", "/CN=vuln-patcher-dev-ca/O=vuln-patcher");
  const address = opts.address ?? "127.0.0.1";
  const [serving, admin, kcm, sa, kubeletClient] = await Promise.all([
    makeLeaf(pki, ca, "apiserver", {
      commonName: "kube-apiserver",
      serverSANs: [
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "IP:127.0.0.1",
        "IP:10.0.0.1",
        ...(address === "127.0.0.1" ? [] : [`IP:${address}`]),
      ],
    }),
    makeLeaf(pki, ca, "admin", { commonName: "admin", organizations: ["system:masters"] }),
    makeLeaf(pki, ca, "kube-controller-manager", { commonName: "system:kube-controller-manager" }),
    makeCA(pki, "sa", "/CN=service-accounts"),
    // For logs and exec: the apiserver's client certificate towards kubelets.
    makeLeaf(pki, ca, "apiserver-kubelet-client", {
      commonName: "kube-apiserver-kubelet-client",
      organizations: ["system:masters"],
    }),
  ]);

  const etcdPort = await freePort();
  const peerPort = await freePort();
  const etcdURL = `http://127.0.0.1:${etcdPort}`;
  const etcd = await launch(
    opts.started,
    new Component({
      name: "etcd",
      command: goBinary("etcd"),
      args: [
        `--data-dir=${join(opts.dir, "etcd")}`,
        `--listen-client-urls=${etcdURL}`,
        `--advertise-client-urls=${etcdURL}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
        `--quota-backend-bytes=${opts.etcdQuotaBytes ?? 8 * 1024 ** 3}`,
        "--auto-compaction-mode=revision",
        "--auto-compaction-retention=1000",
        "--log-level=warn",
      ],
      logDir: opts.dir,
      ready: async () => (await httpStatus(`${etcdURL}/health`)) === 200,
    }),
  );

  const port = await freePort(address);
  const server = `https://${address}:${port}`;
  const apiserver = await launch(
    opts.started,
    new Component({
      name: "kube-apiserver",
      command: goBinary("kube-apiserver"),
      args: [
        `--etcd-servers=${etcdURL}`,
        `--bind-address=${address}`,
        `--advertise-address=${address}`,
        `--kubelet-client-certificate=${kubeletClient.cert}`,
        `--kubelet-client-key=${kubeletClient.key}`,
        `--kubelet-certificate-authority=${ca.cert}`,
        "--kubelet-preferred-address-types=InternalIP",
        `--secure-port=${port}`,
        `--cert-dir=${pki}`,
        `--tls-cert-file=${serving.cert}`,
        `--tls-private-key-file=${serving.key}`,
        `--client-ca-file=${ca.cert}`,
        "--authorization-mode=Node,RBAC",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        `--service-account-issuer=${server}/`,
        `--service-account-key-file=${sa.cert}`,
        `--service-account-signing-key-file=${sa.key}`,
        "--v=0",
      ],
      logDir: opts.dir,
      startTimeoutMs: 90_000,
      ready: async () => (await httpStatus(`${server}/readyz`)) === 200,
    }),
  );

  const kubeconfig = join(opts.dir, "kubeconfig");
  await writeFile(kubeconfig, kubeconfigYAML(server, ca.cert, "admin", admin), { mode: 0o600 });

  let controllerManager: Component | undefined;
  if (opts.controllerManager ?? true) {
    const kcmConfig = join(opts.dir, "kube-controller-manager.kubeconfig");
    await writeFile(kcmConfig, kubeconfigYAML(server, ca.cert, "system:kube-controller-manager", kcm), {
      mode: 0o600,
    });
    const kcmPort = await freePort();
    controllerManager = await launch(
      opts.started,
      new Component({
        name: "kube-controller-manager",
        command: goBinary("kube-controller-manager"),
        args: [
          `--kubeconfig=${kcmConfig}`,
          `--authentication-kubeconfig=${kcmConfig}`,
          `--authorization-kubeconfig=${kcmConfig}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${kcmPort}`,
          `--cert-dir=${join(opts.dir, "kcm-certs")}`,
          `--service-account-private-key-file=${sa.key}`,
          `--root-ca-file=${ca.cert}`,
          "--use-service-account-credentials=true",
          "--controllers=*,-nodeipam,-service-lb-controller,-route,-cloud-node-lifecycle",
          "--leader-elect=false",
          "--concurrent-gc-syncs=5",
          "--v=0",
        ],
        logDir: opts.dir,
        startTimeoutMs: 60_000,
        ready: async () => (await httpStatus(`https://127.0.0.1:${kcmPort}/healthz`)) === 200,
      }),
    );
  }
  return { etcd, apiserver, controllerManager, server, etcdURL, kubeconfig, caCert: ca.cert, ca };
}
