// Structured JSON logs on stderr (stdout stays free for a command's output).
import { pino, type Logger } from "pino";

export type { Logger };

export function newLogger(name: string, level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino(
    {
      name,
      level,
      base: { component: name },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Never log a credential, even by accident.
      redact: {
        paths: ["password", "*.password", "auth", "*.auth", "token", "*.token", "headers.authorization"],
        censor: "[redacted]",
      },
    },
    pino.destination({ dest: 2, sync: true }),
  );
}

/** A logger that drops everything (for library code run without one). */
export const silentLogger: Logger = pino({ level: "silent" });
