// The npm `workerd` package: CommonJS, marked __esModule, whose default export is the platform binary's
// path. Node's loader hands its whole exports object as the default, tsx's the path itself.
declare module "workerd" {
  const binary: string | { default: string };
  export default binary;
}
