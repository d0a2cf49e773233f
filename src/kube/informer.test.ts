import { test } from "node:test";
import assert from "node:assert/strict";
import { setImmediate as tick } from "node:timers/promises";
import { FakeClock } from "./clock.ts";
import { Informer, type ListPage, type RawObject, type WatchFn } from "./informer.ts";

async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await tick();
}

const obj = (name: string, rv: string, extra: Record<string, unknown> = {}): RawObject => ({
  metadata: { name, namespace: "ns", resourceVersion: rv },
  ...extra,
});

/** A fake server: a list of objects (paged), and the watches opened against it. */
function fakeServer() {
  let items: RawObject[] = [];
  const lists: Array<{ limit: number; continueToken?: string }> = [];
  const watches: Array<{
    query: Record<string, string | number | boolean>;
    emit(type: string, o: RawObject): void;
    end(err?: unknown): void;
    aborted: boolean;
  }> = [];
  const list = async (p: { limit: number; continueToken?: string }): Promise<ListPage> => {
    lists.push(p);
    const from = Number(p.continueToken ?? 0);
    const page = items.slice(from, from + p.limit);
    const next = from + p.limit < items.length ? String(from + p.limit) : undefined;
    return { items: page, metadata: { resourceVersion: "100", ...(next ? { continue: next } : {}) } };
  };
  const watch: WatchFn = async (_path, query, onEvent, onDone) => {
    const w = {
      query,
      aborted: false,
      emit: (type: string, o: RawObject) => onEvent(type, o),
      end: (err?: unknown) => onDone(err),
    };
    watches.push(w);
    return { abort: () => (w.aborted = true) };
  };
  return { set: (x: RawObject[]) => (items = x), lists, watches, list, watch };
}

function start(server: ReturnType<typeof fakeServer>, resyncMs = 300_000) {
  const clock = new FakeClock();
  const events: string[] = [];
  const inf = new Informer<RawObject>({
    name: "test",
    list: server.list,
    watch: server.watch,
    watchPath: "/apis/x/v1/things",
    transform: (o) => o,
    resourceVersion: (o) => o.metadata?.resourceVersion,
    pageSize: 2,
    resyncMs,
    clock,
    backoffMinMs: 1000,
  });
  inf.on({
    add: (k) => events.push(`add ${k}`),
    update: (k) => events.push(`update ${k}`),
    delete: (k) => events.push(`delete ${k}`),
  });
  const stop = new AbortController();
  const running = inf.run(stop.signal);
  return { inf, clock, events, stop, running };
}

test("informer - lists every page without a resourceVersion, then watches from the list's version", async () => {
  const s = fakeServer();
  s.set([obj("a", "1"), obj("b", "2"), obj("c", "3")]);
  const h = start(s);
  await h.inf.waitForSync();
  assert.deepEqual(s.lists, [
    { limit: 2, continueToken: undefined },
    { limit: 2, continueToken: "2" },
  ]);
  assert.deepEqual(h.events, ["add ns/a", "add ns/b", "add ns/c"]);
  await settle();
  assert.equal(s.watches.length, 1);
  assert.equal(s.watches[0]!.query.resourceVersion, "100");
  assert.equal(s.watches[0]!.query.allowWatchBookmarks, true);
  assert.equal(s.watches[0]!.query.timeoutSeconds, 300, "the server ends the watch at the resync time");
  h.stop.abort();
  await h.running;
});

test("informer - watch events change the cache; an update with the same resourceVersion is not an event", async () => {
  const s = fakeServer();
  s.set([obj("a", "1")]);
  const h = start(s);
  await h.inf.waitForSync();
  await settle();
  const w = s.watches[0]!;
  w.emit("MODIFIED", obj("a", "1"));
  w.emit("MODIFIED", obj("a", "5", { spec: 1 }));
  w.emit("ADDED", obj("b", "6"));
  w.emit("BOOKMARK", { metadata: { resourceVersion: "9" } });
  w.emit("DELETED", obj("a", "1"));
  assert.deepEqual(h.events, ["add ns/a", "update ns/a", "add ns/b", "delete ns/a"]);
  assert.deepEqual([...h.inf.keys()], ["ns/b"]);
  // A clean end (the server's timeout): watch again from the bookmark, no re-list.
  w.end();
  await settle();
  assert.equal(s.watches.length, 2);
  assert.equal(s.watches[1]!.query.resourceVersion, "9");
  assert.equal(s.lists.length, 1, "no re-list after a clean end");
  h.stop.abort();
  await h.running;
});

test("informer - a quiet watch cut by the inactivity guard is renewed without a re-list", async () => {
  const s = fakeServer();
  s.set([obj("a", "1")]);
  const h = start(s);
  await h.inf.waitForSync();
  await settle();
  for (let i = 0; i < 5; i++) {
    const quiet = new DOMException("The operation was aborted due to timeout", "TimeoutError");
    s.watches.at(-1)!.end(quiet);
    await settle();
  }
  assert.equal(s.watches.length, 6);
  assert.equal(s.lists.length, 1, "five quiet periods, still one LIST");
  assert.equal(h.inf.lists, 1);
  h.stop.abort();
  await h.running;
});

test("informer - a watch error re-lists after a backoff, and the diff finds deletions the watch never saw", async () => {
  const s = fakeServer();
  s.set([obj("a", "1"), obj("b", "2")]);
  const h = start(s);
  await h.inf.waitForSync();
  await settle();
  // b is deleted while no watch sees it (sbomscanner's server never reports that).
  s.set([obj("a", "1"), obj("c", "7")]);
  s.watches[0]!.end(new Error("connection reset"));
  await settle();
  assert.equal(s.lists.length, 1, "the re-list waits for the backoff");
  h.clock.advance(999);
  await settle();
  assert.equal(s.lists.length, 1);
  h.clock.advance(1);
  await settle();
  assert.equal(s.lists.length, 2, "re-listed after 1 s");
  assert.deepEqual(h.events, ["add ns/a", "add ns/b", "add ns/c", "delete ns/b"]);
  assert.equal(s.watches[0]!.aborted, true, "the failed watch was closed");
  h.stop.abort();
  await h.running;
});

test("informer - the resync period re-lists even when the watch stays open; an ERROR event re-lists too", async () => {
  const s = fakeServer();
  s.set([obj("a", "1")]);
  const h = start(s, 60_000);
  await h.inf.waitForSync();
  await settle();
  h.clock.advance(60_000);
  await settle();
  assert.equal(h.inf.lists, 2);
  assert.equal(s.watches[0]!.aborted, true, "the old watch was closed");
  assert.equal(s.watches.length, 2);
  s.watches[1]!.emit("ERROR", { metadata: {}, code: 410 } as RawObject);
  await settle();
  h.clock.advance(1000);
  await settle();
  assert.equal(h.inf.lists, 3);
  h.stop.abort();
  await h.running;
});

test("informer - stopped while its list is in flight: run() returns at once, no watch is left to run to the resync deadline", async () => {
  const server = fakeServer();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const clock = new FakeClock();
  const inf = new Informer<RawObject>({
    name: "test",
    list: async (p) => (await gate, server.list(p)),
    watch: server.watch,
    watchPath: "/apis/x/v1/things",
    transform: (o) => o,
    resourceVersion: (o) => o.metadata?.resourceVersion,
    clock,
  });
  const ac = new AbortController();
  let returned = false;
  const run = inf.run(ac.signal).then(() => (returned = true));
  await settle();
  ac.abort(); // the list is still in flight
  release();
  await settle();
  // No clock time passed: only an immediate return can have ended run().
  assert.equal(returned, true, "run() returned without waiting for the clock");
  assert.equal(server.watches.length, 0, "no watch was opened after the stop");
  await run;
});

test("informer - after the first full list, a relist reads metadata only and gets in full just what moved", async () => {
  const s = fakeServer();
  s.set([obj("a", "1", { big: "x" }), obj("b", "1", { big: "x" }), obj("c", "1", { big: "x" })]);
  const metaLists: number[] = [];
  const gets: string[] = [];
  const stats: Array<{ full: boolean; items: number; fetched: number }> = [];
  const clock = new FakeClock();
  const events: string[] = [];
  const inf = new Informer<RawObject>({
    name: "test",
    list: s.list,
    watch: s.watch,
    watchPath: "/apis/x/v1/things",
    transform: (o) => o,
    resourceVersion: (o) => o.metadata?.resourceVersion,
    resyncMs: 60_000,
    clock,
    onList: (_n, st) => stats.push(st),
    metadataRelist: {
      // What a PartialObjectMetadataList carries: metadata, no body.
      list: async (p) => {
        const page = await s.list(p);
        metaLists.push(page.items.length);
        return { ...page, items: page.items.map((i) => ({ metadata: i.metadata })) };
      },
      get: async (item) => {
        gets.push(String(item.metadata?.name));
        return (await s.list({ limit: 1000 })).items.find((i) => i.metadata?.name === item.metadata?.name);
      },
    },
  });
  inf.on({
    add: (k) => events.push(`add ${k}`),
    update: (k) => events.push(`update ${k}`),
    delete: (k) => events.push(`delete ${k}`),
  });
  const stop = new AbortController();
  const running = inf.run(stop.signal);
  await inf.waitForSync();
  assert.deepEqual(stats, [{ full: true, items: 3, fetched: 3 }], "the first list is a full one");
  await settle(); // the watch is open, its resync timer set
  // Meanwhile: b changed, c went, d came; a did not change.
  s.set([obj("a", "1", { big: "x" }), obj("b", "2", { big: "y" }), obj("d", "3", { big: "z" })]);
  events.length = 0;
  clock.advance(60_000); // the resync deadline
  await settle(40);
  assert.equal(metaLists.length, 1, "one metadata relist");
  assert.deepEqual(gets.sort(), ["b", "d"], "only what moved is got in full");
  assert.deepEqual(stats.at(-1), { full: false, items: 3, fetched: 2 });
  assert.deepEqual(events.sort(), ["add ns/d", "delete ns/c", "update ns/b"]);
  assert.deepEqual(inf.get("ns/b")?.big, "y", "the cache holds the whole object, not its metadata");
  assert.deepEqual(inf.get("ns/a")?.big, "x");
  stop.abort();
  await running;
});
