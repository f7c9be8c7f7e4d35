// Command lines from zod schemas. A command's flags are one flat zod object whose every field has a
// description; from it come the flag names (kebab-case of the keys), their parsing by type, `--help`, the
// checks and their one-line errors ("did you mean ...?"), `--config FILE` (flags override it) and
// `--print-config`. A field's `.meta({ into: "recipe.epochs" })` says where its value goes in the
// command's nested settings (intoSettings); the default is its own key.
import { parseArgs } from "node:util";
import { z } from "zod";
import { readText } from "../data/io.ts";

/** A mistake on the command line: one line for the user, exit code 2. */
export class UsageError extends Error {}

export interface Positional {
  name: string;
  description: string;
  choices?: readonly string[];
  optional?: boolean;
}

export interface CommandSpec<S extends z.ZodObject = z.ZodObject> {
  /** As typed after `npm run`. */
  name: string;
  summary: string;
  positionals?: Positional[];
  flags: S;
  examples: string[];
  /** Checks beyond the flags' own types (the nested settings they make), run before --print-config too. */
  check?: (flags: z.output<S>) => void;
}

export interface Parsed<S extends z.ZodObject> {
  /** Every flag's value, defaults included: written as config.json, it repeats the run exactly. */
  flags: z.output<S>;
  positionals: string[];
}

const ROOT = new URL("../../", import.meta.url).pathname;
const PARENT = new URL("../../../", import.meta.url).pathname;

/** A default as help shows it: paths in or beside the project relative to its root, so the text is the same
 *  in every checkout. */
function shownDefault(v: unknown): string {
  if (typeof v === "string" && v.startsWith(ROOT)) return JSON.stringify(v.slice(ROOT.length));
  if (typeof v === "string" && v.startsWith(PARENT)) return JSON.stringify(`../${v.slice(PARENT.length)}`);
  return JSON.stringify(v);
}

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

interface JsonField {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonField[];
  oneOf?: JsonField[];
  default?: unknown;
  description?: string;
  items?: JsonField;
}

interface Field {
  key: string;
  flag: string;
  kind: "boolean" | "integer" | "number" | "string" | "json" | "list";
  /** For lists: whether the items are numbers. */
  numericItems: boolean;
  /** Literal words the value may also be ("auto"), or the whole choice for an enum. */
  words: string[];
  enumOnly: boolean;
  default?: unknown;
  description: string;
  into: string;
}

function kindOf(j: JsonField): Field["kind"] {
  const types = [j.type, ...(j.anyOf ?? []).map((a) => a.type), ...(j.oneOf ?? []).map((a) => a.type)].flat();
  if (types.includes("object") || (j.oneOf ?? []).length) return "json";
  if (types.includes("array")) return j.items?.type === "object" || j.items?.type === "array" ? "json" : "list";
  if (types.includes("integer")) return "integer";
  if (types.includes("number")) return "number";
  if (types.includes("boolean") && types.every((t) => t === "boolean" || t === undefined)) return "boolean";
  return "string";
}

/** The flags of a command, read from its schema. */
export function fieldsOf(spec: CommandSpec): Field[] {
  const json = z.toJSONSchema(spec.flags, { io: "input", unrepresentable: "any" }) as {
    properties: Record<string, JsonField>;
  };
  return Object.entries(json.properties).map(([key, j]) => {
    const meta = (spec.flags.shape[key] as z.ZodType).meta() as { into?: string; default?: unknown } | undefined;
    const words = [
      ...(j.enum ?? []),
      ...(j.anyOf ?? []).flatMap((a) => (a.const !== undefined ? [a.const] : a.enum ?? [])),
    ].map(String);
    return {
      key,
      flag: kebab(key),
      kind: kindOf(j),
      words,
      enumOnly: !!j.enum,
      numericItems: j.items?.type === "number" || j.items?.type === "integer",
      default: j.default ?? meta?.default,
      description: j.description ?? "",
      into: meta?.into ?? key,
    };
  });
}

const COMMON = [
  {
    flag: "config",
    arg: "FILE",
    description: "settings from a JSON file (keys as in --print-config); flags override it",
  },
  { flag: "print-config", arg: "", description: "print the settings this run would use, as JSON, and exit" },
  { flag: "help", arg: "", description: "this help" },
];

function argName(f: Field): string {
  if (f.kind === "boolean") return "";
  if (f.enumOnly) return f.words.join("|");
  const base = { integer: "N", number: "X", string: "S", json: "JSON", list: "A,B,..." }[f.kind];
  return f.words.length ? `${f.words.join("|")}|${base}` : base;
}

/** The --help text: usage, positionals, every flag with its argument, default and meaning, examples. */
export function helpText(spec: CommandSpec): string {
  const fields = fieldsOf(spec);
  const pos = (spec.positionals ?? []).map((p) => (p.optional ? `[${p.name}]` : p.name.toUpperCase()));
  const rows: [string, string][] = [
    ...fields.map((f): [string, string] => {
      const shown = shownDefault(f.default);
      const def = f.default === undefined || (f.kind === "boolean" && f.default === false)
        ? ""
        : shown.length <= 48
        ? ` (default ${shown})`
        : " (default: see --print-config)";
      return [`--${f.flag}${argName(f) ? ` ${argName(f)}` : ""}`, `${f.description}${def}`];
    }),
    ...COMMON.map((c): [string, string] => [`--${c.flag}${c.arg ? ` ${c.arg}` : ""}`, c.description]),
  ];
  const width = Math.min(34, Math.max(...rows.map(([a]) => a.length)) + 2);
  const wrap = (text: string) => {
    const out: string[] = [""];
    for (const w of text.split(" ")) {
      if (out.at(-1)!.length + w.length + 1 > 110 - width && out.at(-1)) out.push("");
      out[out.length - 1] += (out.at(-1) ? " " : "") + w;
    }
    return out.join(`\n  ${" ".repeat(width)}`);
  };
  const line = ([a, b]: [string, string]) =>
    a.length + 2 > width ? `  ${a}\n  ${" ".repeat(width)}${wrap(b)}` : `  ${a.padEnd(width)}${wrap(b)}`;
  const out = [`${spec.name}: ${spec.summary}`, "", `usage: npm run ${spec.name} -- ${[...pos, "[flags]"].join(" ")}`];
  for (const p of spec.positionals ?? []) {
    out.push(`  ${p.name.padEnd(width)}${p.description}${p.choices ? ` (${p.choices.join(", ")})` : ""}`);
  }
  out.push("", "flags:", ...rows.map(line), "", "examples:", ...spec.examples.map((e) => `  ${e}`));
  return out.join("\n");
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

function nearest(word: string, options: string[]): string | undefined {
  const best =
    options.map((o) => ({ o, d: o.startsWith(word) || word.startsWith(o) ? 1 : distance(word, o) })).sort((x, y) =>
      x.d - y.d
    )[0];
  return best && best.d <= Math.max(2, Math.floor(word.length / 3)) ? best.o : undefined;
}

function coerce(f: Field, raw: string | boolean): unknown {
  if (f.kind === "boolean") return raw === true || raw === "true";
  const v = String(raw);
  const expects = (what: string) => new UsageError(`--${f.flag} expects ${what}, got "${v}"`);
  if (f.words.includes(v)) return v;
  if (f.enumOnly) throw expects(`one of ${f.words.join(", ")}`);
  switch (f.kind) {
    case "integer":
    case "number": {
      const x = Number(v);
      if (v.trim() === "" || !Number.isFinite(x) || (f.kind === "integer" && !Number.isInteger(x))) {
        throw expects(
          f.words.length
            ? `${f.words.join(" or ")} or ${f.kind === "integer" ? "an integer" : "a number"}`
            : f.kind === "integer"
            ? "an integer"
            : "a number",
        );
      }
      return x;
    }
    case "json":
      try {
        return JSON.parse(v);
      } catch {
        throw expects(`JSON, e.g. '{"key": 1}'`);
      }
    case "list": {
      const items = v.split(",").map((s) => s.trim()).filter(Boolean);
      if (!f.numericItems) return items;
      if (items.some((s) => !Number.isFinite(Number(s)))) throw expects("comma-separated numbers");
      return items.map(Number);
    }
    default:
      return v;
  }
}

/**
 * Parse `argv` for `spec`. `--help` and `--print-config` are answered here (their text is returned in
 * `exitWith`); mistakes throw UsageError with one line naming the flag.
 */
export async function parseCommand<S extends z.ZodObject>(
  spec: CommandSpec<S>,
  argv: string[],
): Promise<Parsed<S> & { exitWith?: string }> {
  const fields = fieldsOf(spec);
  const byFlag = new Map(fields.map((f) => [f.flag, f]));
  const known = [...fields.map((f) => f.flag), ...COMMON.map((c) => c.flag)];
  for (const a of argv) {
    if (!a.startsWith("--")) continue;
    const name = a.slice(2).split("=")[0];
    if (!known.includes(name)) {
      const near = nearest(name, known);
      throw new UsageError(`unknown flag --${name}${near ? ` (did you mean --${near}?)` : ""}; see --help`);
    }
  }
  const options: Record<string, { type: "string" | "boolean" }> = {
    config: { type: "string" },
    "print-config": { type: "boolean" },
    help: { type: "boolean" },
  };
  for (const f of fields) options[f.flag] = { type: f.kind === "boolean" ? "boolean" : "string" };
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split("\n")[0]}; see --help`);
  }
  if (values.help) return { flags: {} as z.output<S>, positionals, exitWith: helpText(spec) };
  const want = spec.positionals ?? [];
  want.forEach((p, i) => {
    const v = positionals[i];
    if (v === undefined && !p.optional) {
      throw new UsageError(`missing ${p.name}${p.choices ? ` (${p.choices.join(", ")})` : ""}; see --help`);
    }
    if (v !== undefined && p.choices && !p.choices.includes(v)) {
      const near = nearest(v, [...p.choices]);
      throw new UsageError(
        `unknown ${p.name} "${v}"${near ? ` (did you mean ${near}?)` : ""}; one of ${p.choices.join(", ")}`,
      );
    }
  });
  if (positionals.length > want.length) {
    throw new UsageError(`unexpected argument "${positionals[want.length]}"; see --help`);
  }

  const given: Record<string, unknown> = {};
  if (typeof values.config === "string") {
    let file: unknown;
    try {
      file = JSON.parse(await readText(values.config));
    } catch (e) {
      throw new UsageError(`--config ${values.config}: ${(e as Error).message}`);
    }
    if (!file || typeof file !== "object" || Array.isArray(file)) {
      throw new UsageError(`--config ${values.config}: not a JSON object`);
    }
    for (const [k, v] of Object.entries(file)) {
      const f = byFlag.get(kebab(camel(k)));
      if (!f) {
        const near = nearest(kebab(k), [...byFlag.keys()]);
        throw new UsageError(
          `--config ${values.config}: unknown setting "${k}"${near ? ` (did you mean "${camel(near)}"?)` : ""}`,
        );
      }
      given[f.key] = v;
    }
  }
  for (const f of fields) {
    let v = values[f.flag];
    if (v === undefined) continue;
    // JSON settings may come from a file: --attack-config @attack.json (or a path ending in .json).
    if (f.kind === "json" && typeof v === "string" && (v.startsWith("@") || /^[^{[].*\.json$/i.test(v))) {
      const path = v.startsWith("@") ? v.slice(1) : v;
      try {
        v = await readText(path);
      } catch (e) {
        throw new UsageError(`--${f.flag} ${path}: ${(e as Error).message}`);
      }
    }
    given[f.key] = coerce(f, v);
  }
  const r = spec.flags.safeParse(given);
  if (!r.success) {
    const i = r.error.issues[0];
    const f = fields.find((x) => x.key === String(i.path[0]));
    const where = f ? `--${f.flag}${i.path.length > 1 ? ` (${i.path.slice(1).join(".")})` : ""}` : "settings";
    throw new UsageError(`${where}: ${i.message}`);
  }
  spec.check?.(r.data);
  if (values["print-config"]) return { flags: r.data, positionals, exitWith: JSON.stringify(r.data, null, 2) };
  return { flags: r.data, positionals };
}

/**
 * The nested settings the flags stand for: each set flag's value at its `into` path, over `base` (the
 * command's defaults). Objects given as JSON merge into what is there.
 */
export function intoSettings(
  spec: CommandSpec,
  flags: Record<string, unknown>,
  base: Record<string, unknown> = {},
): Record<string, unknown> {
  const out = structuredClone(base);
  const fields = fieldsOf(spec);
  // Whole objects first, then the single values that go inside them.
  const order = [...fields].sort((a, b) => a.into.split(".").length - b.into.split(".").length);
  for (const f of order) {
    if (flags[f.key] === undefined) continue;
    const path = f.into.split(".");
    let at = out;
    for (const p of path.slice(0, -1)) at = (at[p] ??= {}) as Record<string, unknown>;
    const last = path.at(-1)!;
    const v = flags[f.key];
    at[last] = v && typeof v === "object" && !Array.isArray(v) && at[last] && typeof at[last] === "object"
      ? { ...(at[last] as object), ...v }
      : v;
  }
  return out;
}

/**
 * Check the nested settings against their schema; a mistake names the flag that put the value there
 * (the deepest `into` that is a prefix of the issue's path).
 */
export function checkSettings<T extends z.ZodType>(
  spec: CommandSpec,
  schema: T,
  settings: unknown,
  given: Record<string, unknown> = {},
): z.output<T> {
  const r = schema.safeParse(settings);
  if (r.success) return r.data;
  const i = r.error.issues[0];
  const path = i.path.map(String).join(".");
  // The flags whose `into` leads there, deepest first, a flag that was given before one that was not.
  const f =
    fieldsOf(spec).filter((x) => path === x.into || path.startsWith(`${x.into}.`)).sort((a, b) =>
      Number(given[b.key] !== undefined) - Number(given[a.key] !== undefined) || b.into.length - a.into.length
    )[0];
  throw new UsageError(`${f ? `--${f.flag}` : "settings"}${path ? ` (${path})` : ""}: ${i.message}`);
}
