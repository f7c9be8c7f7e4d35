// TF.js-style specialisation for values WGSL cannot take as `override` (function-scope array sizes):
// rewrite `const NAME: u32 = 4u;` declarations in the source. The shader file stays valid WGSL with its defaults.
export function specialise(code: string, consts: Record<string, number>): string {
  let out = code;
  for (const [name, value] of Object.entries(consts)) {
    const re = new RegExp(`const\\s+${name}\\s*:\\s*u32\\s*=\\s*[0-9]+u\\s*;`);
    if (!re.test(out)) throw new Error(`specialise: no "const ${name}: u32 = ...u;" declaration in the shader`);
    if (!Number.isInteger(value) || value < 0) {
      throw new Error(`specialise: ${name}=${value} must be a non-negative integer`);
    }
    out = out.replace(re, `const ${name}: u32 = ${value}u;`);
  }
  return out;
}
