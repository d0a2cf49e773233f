// Small things every part uses: logs, errors, durations, the probe server, finding tools.
export { parseDuration } from "./duration.ts";
export { errorMessage, UsageError } from "./errors.ts";
export { parseListen, type Route, type RunningServer, startHttpServer } from "./http.ts";
export { type Logger, newLogger, silentLogger } from "./log.ts";
export { cacheDir, cachedTool, findTool } from "./tools.ts";
export { MIN_NODE, nodeTooOld } from "./node-version.ts";
