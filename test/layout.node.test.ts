// The project's shape, checked: the module boundaries on the import graph of the sources (nothing under
// src/ imports server/: the coordinator and its volunteers share only src/protocol/; server/ takes
// nothing from src/volunteer/; the tests that run in Chromium take nothing from server/; the browser
// volunteer page does not pull in the single-machine pipeline), the kernel contract (one shader, one
// module in kernels/, one test in test/kernels/ per op), and the line width deno fmt is configured for,
// which it cannot enforce on long strings and comments.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) return sources(rel);
    return rel.endsWith(".ts") ? [rel] : [];
  });
}

/** Relative modules `file` imports (static, dynamic, re-exports, type-only), as repo paths. */
export function importsOf(file: string): string[] {
  const code = readFileSync(join(ROOT, file), "utf8");
  const specs = [
    ...code.matchAll(
      /(?:^|\n)\s*(?:import|export)\b[^"'`;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g,
    ),
  ].map((m) => m[1] ?? m[2]);
  return specs.filter((s) => s.startsWith(".")).map((s) => relative(ROOT, normalize(join(ROOT, dirname(file), s))));
}

function reachable(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (f: string) => {
    if (seen.has(f) || !f.endsWith(".ts")) return;
    seen.add(f);
    importsOf(f).forEach(visit);
  };
  visit(entry);
  return seen;
}

describe("module boundaries", () => {
  it("finds imports of every form", () => {
    expect(importsOf("test/layout.node.test.ts")).toEqual(["kernels/discover.ts"]); // a dynamic import, below
    expect(importsOf("src/detect/pipeline.ts")).toContain("src/detect/finish.ts");
    expect(importsOf("server/serve.ts")).toContain("server/jobs/index.ts"); // a dynamic import
  });

  it("nothing under src/ imports server/", () => {
    const bad = sources("src").flatMap((f) =>
      importsOf(f).filter((i) => i.startsWith("server/")).map((i) => `${f} -> ${i}`)
    );
    expect(bad).toEqual([]);
  });

  it("server/ takes nothing from src/volunteer/", () => {
    const bad = sources("server").flatMap((f) =>
      importsOf(f).filter((i) => i.startsWith("src/volunteer/")).map((i) => `${f} -> ${i}`)
    );
    expect(bad).toEqual([]);
  });

  it("the kernel tests that run in Chromium pull in nothing from server/ (Node-only modules)", () => {
    const browserTests = ["test/kernels", "test/nn", "test/attribution", "test/datamodels"].flatMap(sources)
      .filter((f) => f.endsWith(".test.ts") && !/\.(deno|node)\.test\.ts$/.test(f));
    expect(browserTests).toContain("test/nn/replay.test.ts");
    const bad = browserTests.flatMap((t) =>
      [...reachable(t)].filter((f) => f.startsWith("server/")).map((f) => `${t} -> ${f}`)
    );
    expect(bad).toEqual([]);
  });

  it("the browser volunteer page does not pull in the pipeline, the coordinator or the CLIs", () => {
    const graph = [...reachable("src/volunteer/browser/page.ts"), ...reachable("src/volunteer/browser/worker.ts")];
    expect(graph).toContain("src/protocol/client.ts");
    const bad = graph.filter((f) =>
      f === "src/detect/pipeline.ts" || f.startsWith("server/") || f.startsWith("src/cli/")
    );
    expect(bad).toEqual([]);
  });
});

describe("kernel contract", () => {
  it(
    "every op a module in kernels/ declares registers itself, has a shader and " +
      "test/kernels/<op>.test.ts",
    async () => {
      const { kernelModules, loadKernels } = await import("../kernels/discover.ts");
      const declared = (await kernelModules()).flatMap((f) =>
        [...readFileSync(join(ROOT, "kernels", f), "utf8").matchAll(/defineOp(?:<[^>]*>)?\(\s*"([^"]+)"/g)].map((m) =>
          m[1]
        )
      );
      expect(declared.length).toBeGreaterThan(15);
      const ops = await loadKernels();
      expect([...ops.keys()].sort()).toEqual([...declared].sort());
      const problems: string[] = [];
      for (const [name, op] of ops) {
        if (!existsSync(join(ROOT, "test/kernels", `${name}.test.ts`))) {
          problems.push(`${name}: no test/kernels/${name}.test.ts`);
        }
        // A generated variant names its generator: "kernels/matmul-codegen.ts (exactShader)".
        for (const v of op.variants) {
          if (!existsSync(join(ROOT, v.file.split(" ")[0]))) {
            problems.push(`${name}/${v.name}: no shader file ${v.file}`);
          }
        }
      }
      expect(problems).toEqual([]);
    },
  );
});

describe("formatting", () => {
  it("no source line is wider than deno.json's fmt.lineWidth", () => {
    const { fmt } = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8")) as { fmt: { lineWidth: number } };
    expect(fmt.lineWidth).toBeLessThanOrEqual(120);
    const wide = ["src", "server", "kernels", "test", "bench"].flatMap(sources).flatMap((f) =>
      readFileSync(join(ROOT, f), "utf8").split("\n").flatMap((
        l,
        i,
      ) => (l.length > fmt.lineWidth ? [`${f}:${i + 1} (${l.length})`] : []))
    );
    expect(wide).toEqual([]);
  });
});
