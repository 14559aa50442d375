/**
 * The optional properties of the package's public types whose declared type
 * does not admit `undefined`: under a consumer's
 * `exactOptionalPropertyTypes`, `{ token: process.env.TOKEN }` is refused for
 * `token?: string` and taken for `token?: string | undefined`. Walks the
 * types every entry point exports, and the object types of their
 * properties, with the TypeScript compiler API.
 */
import ts from 'typescript';

export interface OptionalProp {
  file: string;
  line: number;
  where: string;
  /** Where the type node starts and ends in its file. */
  start: number;
  end: number;
  /** A function or conditional type needs parentheses before `| undefined`. */
  wrap: boolean;
}

export const ENTRIES = ['src/index.ts', 'src/testing/index.ts', 'src/models.ts', 'src/dashboard/index.ts'];

export function optionalPropsWithoutUndefined(root: string): OptionalProp[] {
  const program = ts.createProgram(ENTRIES.map((e) => `${root}/${e}`), {
    strict: true, exactOptionalPropertyTypes: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
    allowImportingTsExtensions: true, noEmit: true, target: ts.ScriptTarget.ES2022, types: ['node'], skipLibCheck: true,
  });
  const checker = program.getTypeChecker();
  const seen = new Set<ts.Symbol>();
  const out: OptionalProp[] = [];
  const admitsUndefined = (t: ts.Type): boolean =>
    (t.isUnion() ? t.types : [t]).some((x) => (x.flags & (ts.TypeFlags.Undefined | ts.TypeFlags.Any | ts.TypeFlags.Unknown)) !== 0);
  const visit = (type: ts.Type, where: string, depth: number): void => {
    if (depth > 3) return;
    for (const prop of checker.getPropertiesOfType(type)) {
      if (seen.has(prop)) continue;
      seen.add(prop);
      const decl = prop.valueDeclaration ?? prop.declarations?.[0];
      if (!decl || !decl.getSourceFile().fileName.startsWith(`${root}/src/`) || hidden(decl)) continue;
      if (!(ts.isPropertySignature(decl) || ts.isPropertyDeclaration(decl)) || !decl.type) continue;
      const declared = checker.getTypeFromTypeNode(decl.type);
      if (decl.questionToken && !admitsUndefined(declared)) {
        const sf = decl.getSourceFile();
        out.push({
          file: sf.fileName.slice(root.length + 1), line: sf.getLineAndCharacterOfPosition(decl.type.getStart()).line + 1,
          where: `${where}.${prop.name}`, start: decl.type.getStart(), end: decl.type.getEnd(),
          wrap: ts.isFunctionTypeNode(decl.type) || ts.isConstructorTypeNode(decl.type) || ts.isConditionalTypeNode(decl.type),
        });
      }
      // The properties of an inline or exported object type a property takes (roles: { ttl? }).
      objectTypes(declared).forEach((part) => visit(part, `${where}.${prop.name}`, depth + 1));
    }
    // The options a method takes (client.signal(run, name, payload, { id? })).
    for (const prop of checker.getPropertiesOfType(type)) {
      const decl = prop.valueDeclaration ?? prop.declarations?.[0];
      if (!decl || !decl.getSourceFile().fileName.startsWith(`${root}/src/`) || hidden(decl)) continue;
      visitSignatures(checker.getTypeOfSymbolAtLocation(prop, decl), `${where}.${prop.name}()`, depth + 1);
    }
  };
  /** A private or protected class member: not the package's surface. */
  const hidden = (decl: ts.Declaration): boolean =>
    (ts.getCombinedModifierFlags(decl) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) !== 0
    || (ts.isClassElement(decl) && decl.name !== undefined && ts.isPrivateIdentifier(decl.name));
  const objectTypes = (type: ts.Type): ts.Type[] => (type.isUnion() ? type.types : [type])
    .filter((part) => (part.flags & ts.TypeFlags.Object) !== 0 && !checker.isArrayType(part) && part.getCallSignatures().length === 0);
  const visitSignatures = (type: ts.Type, where: string, depth: number): void => {
    for (const signature of type.getCallSignatures()) {
      for (const param of signature.getParameters()) {
        const decl = param.valueDeclaration;
        if (!decl) continue;
        objectTypes(checker.getTypeOfSymbolAtLocation(param, decl)).forEach((part) => visit(part, `${where}(${param.name})`, depth));
      }
    }
  };
  for (const entry of ENTRIES) {
    const sf = program.getSourceFile(`${root}/${entry}`);
    const mod = sf && checker.getSymbolAtLocation(sf);
    if (!mod) throw new Error(`no module for ${entry}`);
    for (const exported of checker.getExportsOfModule(mod)) {
      const sym = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      if (sym.flags & (ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias | ts.SymbolFlags.Class)) visit(checker.getDeclaredTypeOfSymbol(sym), exported.name, 0);
      if (sym.flags & ts.SymbolFlags.Function && sym.valueDeclaration) {
        visitSignatures(checker.getTypeOfSymbolAtLocation(sym, sym.valueDeclaration), exported.name, 0);
      }
    }
  }
  return out;
}
