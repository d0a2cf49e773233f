// The real-component development environment: what `vuln-patcher dev up`, the demo and
// the tests start, every process a child stopped by pid.
export { attachEnv, setup, Env, type AuthRegistry, type EnvOptions, type Endpoints } from "./env.ts";
export { Component } from "./component.ts";
export { freePort, httpStatus } from "./net.ts";
export { isAlive, stopPid } from "./process.ts";
export { ensureGoTools, goBinary, systemBinary, cacheDir, REPO_ROOT, type GoComponent } from "./tools.ts";
