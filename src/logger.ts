export const logLevels = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
  /**
   * `text` with the secrets replaced, as every line is: for text cut short before it is logged, since a secret cut in
   * two is no longer found whole in the line.
   */
  redact(text: string): string;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Values that must never be written (the upstream token); replaced wherever they occur in a line. */
  secrets?: readonly string[];
  /** Where finished lines go; stdout by default. */
  write?: (line: string) => void;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };
// A token in a URL query is redacted even when it is not a configured secret (a mistyped or rotated one), also
// where the query string is quoted without its `?` (`raw=token=…`) or inside another word boundary.
// It runs on the serialized line, so it stops at a backslash too: eating the one of an escaped quote would end
// the JSON string early and leave a line that is not JSON.
const tokenInQuery = /(\btoken=)[^&\s"'\\]*/gi;
const tokenName = /\btoken=/gi;

/** One JSON object per line, the shape log pipelines ingest without parsing rules. */
export function createLogger(options: LoggerOptions, bound: LogFields = {}): Logger {
  const threshold = rank[options.level];
  // A secret is matched as written, as JSON escapes it inside a line (twice: a field may hold JSON text, such as a
  // body), and URL-encoded (as it travels in a query string, which an upstream may quote back):
  // encodeURIComponent's form and URLSearchParams' (`+` for a space).
  const secrets = [
    ...new Set(
      (options.secrets ?? [])
        .filter((secret) => secret.length > 0)
        .flatMap((secret) => {
          const percent = encodeURIComponent(secret);
          // Also encoded twice (a URL quoted inside another URL) and with lowercase hex escapes.
          const encoded = [
            percent,
            percent.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase()),
            encodeURIComponent(percent),
            new URLSearchParams({ t: secret }).toString().slice(2),
          ];
          const escape = (form: string) => JSON.stringify(form).slice(1, -1);
          return [secret, ...encoded].flatMap((form) => [escape(escape(form)), escape(form), form]);
        }),
    ),
  ].sort((a, b) => b.length - a.length);
  const redact = redactor(secrets);
  const write = options.write ?? ((line: string) => process.stdout.write(`${line}\n`));

  const log = (level: Exclude<LogLevel, 'silent'>, message: string, fields?: LogFields) => {
    if (rank[level] < threshold) return;
    const line = JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...bound, ...fields }, errorReplacer);
    write(redact(line));
  };

  return {
    debug: (message, fields) => log('debug', message, fields),
    info: (message, fields) => log('info', message, fields),
    warn: (message, fields) => log('warn', message, fields),
    error: (message, fields) => log('error', message, fields),
    child: (fields) => createLogger(options, { ...bound, ...fields }),
    redact,
  };
}

/**
 * Runs `work` once the current I/O is done (setImmediate), for bookkeeping that must not delay a response: a
 * throw there is logged as `<what> failed`, never left to crash the process and every request in flight.
 */
export function afterIo(logger: Logger, what: string, work: () => void): void {
  setImmediate(() => {
    try {
      work();
    } catch (error) {
      logger.error(`${what} failed`, { error });
    }
  });
}

/**
 * What a line goes through before it is written. The known secrets first, whole: the `token=` pattern stops at a
 * quote, backslash or space, and run first it would leave the rest of a token holding one where the whole could no
 * longer be found. The `token=` names are set aside meanwhile (a JSON line holds no raw U+0001), so a short secret
 * inside the word cannot break the pattern; not when a secret itself holds `token=` or U+0001, which must then be
 * matched whole as it is. Which of the two applies depends on the secrets alone: decided once, not per line.
 */
function redactor(secrets: readonly string[]): (text: string) => string {
  const shield = !secrets.some((secret) => /token=|\u0001/i.test(secret));
  return (text) => {
    const names: string[] = [];
    let out = shield
      ? text.replace(tokenName, (name) => {
          names.push(name);
          return '\u0001';
        })
      : text;
    for (const secret of secrets) out = out.split(secret).join('[REDACTED]');
    if (shield) {
      let restored = 0;
      out = out.replace(/\u0001/g, () => names[restored++] ?? '');
    }
    return out.replace(tokenInQuery, '$1[REDACTED]');
  };
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    return { name: value.name, message: value.message, stack: value.stack, cause: value.cause };
  }
  return value;
}
