// Lease-based leader election, after client-go's leaderelection: settings checked at
// construction, expiry judged by when *this* process last saw the record change (never
// by another machine's clock), leader work under a signal that aborts when leadership
// ends, the lease released on a clean shutdown, and a health check that fails when
// renewal lapses.
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import { isConflict, isNotFound, apiMessage } from "./errors.ts";
import { realClock, sleepOn, type Clock } from "./clock.ts";

import { type Logger, silentLogger } from "../util/index.ts";

/** The Lease calls leader election makes (client-node's CoordinationV1Api has this shape). */
export interface LeaseApi {
  readNamespacedLease(p: { namespace: string; name: string }): Promise<V1Lease>;
  createNamespacedLease(p: { namespace: string; body: V1Lease }): Promise<V1Lease>;
  replaceNamespacedLease(p: { namespace: string; name: string; body: V1Lease }): Promise<V1Lease>;
}

/** @default 15_000 */
export const DEFAULT_LEASE_DURATION_MS = 15_000;
/** @default 10_000 */
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
/** @default 2_000 */
export const DEFAULT_RETRY_PERIOD_MS = 2_000;

export interface LeaderElectionOptions {
  /** For the default Lease API; give `leases` instead to use another. */
  kc?: KubeConfig;
  leases?: LeaseApi;
  clock?: Clock;
  namespace: string;
  /** Lease name. */
  name: string;
  /** This candidate (pod name + a random suffix). */
  identity: string;
  /** @default DEFAULT_LEASE_DURATION_MS */
  leaseDurationMs?: number;
  /** @default DEFAULT_RENEW_DEADLINE_MS */
  renewDeadlineMs?: number;
  /** @default DEFAULT_RETRY_PERIOD_MS */
  retryPeriodMs?: number;
  /** Leader-only work; `signal` aborts when leadership ends. Resolving early ends leadership too. */
  onStartedLeading: (signal: AbortSignal) => Promise<void>;
  /** Always called when run() ends after having led. */
  onStoppedLeading?: () => void;
  onNewLeader?: (identity: string) => void;
  /** Give the lease up when shutting down cleanly. @default true */
  releaseOnCancel?: boolean;
  log?: Logger;
}

const JITTER = 1.2;
/** Giving the lease up on shutdown waits this long at most. */
const RELEASE_TIMEOUT_MS = 2_000;

type Settings = Required<
  Pick<
    LeaderElectionOptions,
    | "namespace"
    | "name"
    | "identity"
    | "leaseDurationMs"
    | "renewDeadlineMs"
    | "retryPeriodMs"
    | "onStartedLeading"
    | "releaseOnCancel"
  >
> &
  Pick<LeaderElectionOptions, "onStoppedLeading" | "onNewLeader">;

export class LeaderElector {
  readonly #o: Settings;
  #api: LeaseApi;
  #clock: Clock;
  #log: Logger;
  #observed?: { holder: string; renewTime: string; rv: string; at: number };
  #lastRenew = 0;
  #leading = false;
  #lastLeader = "";

  constructor(opts: LeaderElectionOptions) {
    const o = {
      leaseDurationMs: DEFAULT_LEASE_DURATION_MS,
      renewDeadlineMs: DEFAULT_RENEW_DEADLINE_MS,
      retryPeriodMs: DEFAULT_RETRY_PERIOD_MS,
      releaseOnCancel: true,
      ...opts,
    };
    if (o.leaseDurationMs <= o.renewDeadlineMs)
      throw new Error("leaseDuration must be greater than renewDeadline");
    if (o.renewDeadlineMs <= JITTER * o.retryPeriodMs)
      throw new Error("renewDeadline must be greater than retryPeriod*JitterFactor");
    if (!o.identity) throw new Error("leader election identity must not be empty");
    if (!o.name || !o.namespace) throw new Error("leader election needs a lease name and namespace");
    if (typeof o.onStartedLeading !== "function")
      throw new Error("onStartedLeading callback must not be nil");
    this.#o = o;
    if (opts.leases) this.#api = opts.leases;
    else if (opts.kc) this.#api = opts.kc.makeApiClient(CoordinationV1Api);
    else throw new Error("leader election needs kc or leases");
    this.#clock = opts.clock ?? realClock;
    this.#log = (opts.log ?? silentLogger).child({ lease: `${o.namespace}/${o.name}`, identity: o.identity });
  }

  /** Healthy unless we lead and have not renewed within the lease duration (plus a little). */
  check(toleranceMs = 2_000): boolean {
    return !this.#leading || this.#clock.now() - this.#lastRenew <= this.#o.leaseDurationMs + toleranceMs;
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const now = new V1MicroTime(this.#clock.now());
    const { namespace, name, identity } = this.#o;
    const durationSeconds = Math.ceil(this.#o.leaseDurationMs / 1000);
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.#api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: durationSeconds,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          },
        });
        this.#observed = { holder: identity, renewTime: now.toISOString(), rv: "", at: this.#clock.now() };
        return true;
      } catch (e) {
        if (isConflict(e)) return false;
        throw e;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const renew = spec.renewTime ? new Date(spec.renewTime).toISOString() : "";
    const rv = lease.metadata?.resourceVersion ?? "";
    if (
      !this.#observed ||
      this.#observed.holder !== holder ||
      this.#observed.renewTime !== renew ||
      this.#observed.rv !== rv
    ) {
      this.#observed = { holder, renewTime: renew, rv, at: this.#clock.now() };
    }
    if (holder !== this.#lastLeader) {
      this.#lastLeader = holder;
      if (holder) this.#o.onNewLeader?.(holder);
    }
    const heldByOther = holder !== "" && holder !== identity;
    const leaseMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (heldByOther && this.#clock.now() < this.#observed.at + leaseMs) return false;
    const transition = holder !== identity;
    try {
      const updated = await this.#api.replaceNamespacedLease({
        namespace,
        name,
        body: {
          metadata: { ...lease.metadata, name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: transition ? now : spec.acquireTime,
            renewTime: now,
            leaseTransitions: (spec.leaseTransitions ?? 0) + (transition && holder !== "" ? 1 : 0),
          },
        },
      });
      this.#observed = {
        holder: identity,
        renewTime: now.toISOString(),
        rv: updated.metadata?.resourceVersion ?? "",
        at: this.#clock.now(),
      };
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  async #attempt(): Promise<boolean> {
    try {
      return await this.#tryAcquireOrRenew();
    } catch (err) {
      this.#log.warn({ err: apiMessage(err) }, "lease request failed");
      return false;
    }
  }

  /** Campaign, lead, and return when leadership ends or `signal` aborts. Returns true if leadership was lost (not given up). */
  async run(signal: AbortSignal): Promise<boolean> {
    while (!signal.aborted && !(await this.#attempt())) {
      await sleepOn(this.#clock, this.#o.retryPeriodMs * (1 + Math.random() * (JITTER - 1)), signal);
    }
    if (signal.aborted) return false;
    this.#leading = true;
    this.#lastRenew = this.#clock.now();
    this.#log.info("became leader");
    const work = new AbortController();
    let lost = false;
    const onAbort = () => work.abort(new Error("shutting down"));
    signal.addEventListener("abort", onAbort, { once: true });
    const done = this.#o
      .onStartedLeading(work.signal)
      .catch((err: unknown) => this.#log.error({ err }, "leader work failed"));
    let workEnded = false;
    void done.then(() => (workEnded = true));
    try {
      while (!work.signal.aborted && !workEnded) {
        await sleepOn(this.#clock, this.#o.retryPeriodMs, work.signal);
        if (work.signal.aborted || workEnded) break;
        if (await this.#attempt()) this.#lastRenew = this.#clock.now();
        else if (this.#clock.now() - this.#lastRenew > this.#o.renewDeadlineMs) {
          lost = true;
          this.#log.error("leadership lost: could not renew the lease in time");
          work.abort(new Error("leader election lost"));
        }
      }
      await done;
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.#leading = false;
      // Bounded: a clean shutdown must not wait for an apiserver that does not answer.
      if (!lost && this.#o.releaseOnCancel)
        await Promise.race([this.#release(), sleepOn(this.#clock, RELEASE_TIMEOUT_MS)]);
      this.#o.onStoppedLeading?.();
    }
    return lost;
  }

  /** Give the lease up (holder cleared, 1 s duration), so a standby takes over at once. */
  async #release(): Promise<void> {
    try {
      const lease = await this.#api.readNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name });
      if (lease.spec?.holderIdentity !== this.#o.identity) return;
      await this.#api.replaceNamespacedLease({
        namespace: this.#o.namespace,
        name: this.#o.name,
        body: {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: "",
            leaseDurationSeconds: 1,
            renewTime: new V1MicroTime(this.#clock.now()),
          },
        },
      });
      this.#log.info("released the lease");
    } catch (err) {
      this.#log.warn({ err: apiMessage(err) }, "could not release the lease");
    }
  }
}
