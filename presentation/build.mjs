#!/usr/bin/env node
// Build the CAM teaching deck: presentation/slides.md -> slides.html (one self-contained
// file) and slides.pdf (printed from that file by the system's headless Chromium, driven by
// playwright-core, once reveal.js's print layout is complete; checked for one page per slide).
//
//   node build.mjs [--images DIR] [--out DIR] [--no-pdf] [--keep-png] [--chromium PATH]
//
// Everything the deck needs is inlined: reveal.js (JS, CSS, theme and its fonts), the
// KaTeX stylesheet and fonts (as data: URIs) and every figure. Markdown and math are
// rendered here, at build time (marked + KaTeX), so the page runs no Markdown or TeX code
// and loads nothing from the network; a Content-Security-Policy in the page enforces that.
// The output has no timestamps: the same inputs give the same slides.html, and
// slides.pdf gets fixed dates so that it is reproducible too.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import jpeg from "jpeg-js";
import katex from "katex";
import { Marked } from "marked";
import { PNG } from "pngjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.dirname(HERE);
const NODE_MODULES = path.join(HERE, "node_modules");

// Slide size in CSS pixels (16:9); the PDF pages get the same proportions.
const SLIDE = { width: 1280, height: 720, margin: 0.04 };
// A figure must stay sharp on a 1920x1080 screen, where the 1280x720 slide is drawn 1.5
// times larger: it keeps at least the pixels it occupies there. No figure can occupy more
// than the whole slide, so figures are shrunk only beyond SCREEN_SCALE times the slide
// (1920x1080). A PNG without transparency is stored as JPEG when that is at least
// JPEG_MIN_SAVING smaller.
const SCREEN_SCALE = 1.5;
const MAX_FIGURE = { width: SLIDE.width * SCREEN_SCALE, height: SLIDE.height * SCREEN_SCALE };
const JPEG_QUALITY = 85;
const JPEG_MIN_SAVING = 0.3;
// slides.html and slides.pdf should each stay below this size: a dozen figures sharp at
// 1920x1080 need several MiB, and a teacher opens one file.
const BUDGET_MIB = 10;
const BUDGET_BYTES = BUDGET_MIB * 1024 * 1024;

class BuildError extends Error {}

function die(message) {
  throw new BuildError(message);
}

function log(message) {
  process.stderr.write(`[slides] ${message}\n`);
}

// ---------------------------------------------------------------------------
// Command line

function parseArgs(argv) {
  const opts = {
    images: process.env.SLIDES_IMAGES || path.join(REPO, "images"),
    out: HERE,
    source: path.join(HERE, "slides.md"),
    pdf: true,
    keepPng: false,
    chromium: process.env.CHROMIUM || "",
  };
  const value = (i, name) => {
    if (i + 1 >= argv.length) die(`${name} needs a value`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--images") opts.images = value(i++, a);
    else if (a === "--out") opts.out = value(i++, a);
    else if (a === "--source") opts.source = value(i++, a);
    else if (a === "--chromium") opts.chromium = value(i++, a);
    else if (a === "--no-pdf") opts.pdf = false;
    else if (a === "--keep-png") opts.keepPng = true;
    else if (a === "-h" || a === "--help") {
      process.stdout.write(
        "usage: node build.mjs [--images DIR] [--out DIR] [--source FILE] [--no-pdf] [--keep-png] [--chromium PATH]\n" +
          "  --images DIR   folder that `images/...` in slides.md refers to\n" +
          "                 (default: $SLIDES_IMAGES, else <repo>/images)\n" +
          "  --out DIR      where slides.html and slides.pdf go (default: presentation/)\n" +
          "  --no-pdf       only write slides.html\n" +
          "  --keep-png     inline PNG figures as PNG even where JPEG would be much smaller\n" +
          "  --chromium P   browser for the PDF (default: $CHROMIUM, else chromium on PATH)\n",
      );
      process.exit(0);
    } else die(`unknown argument ${a} (try --help)`);
  }
  opts.images = path.resolve(opts.images);
  opts.out = path.resolve(opts.out);
  opts.source = path.resolve(opts.source);
  return opts;
}

// ---------------------------------------------------------------------------
// Markdown -> slides

// The TeX macros the slides may use.
const KATEX_MACROS = {
  "\\ReLU": "\\operatorname{ReLU}",
};

function renderTex(tex, displayMode, where) {
  try {
    return katex.renderToString(tex, {
      displayMode,
      throwOnError: true,
      strict: "error",
      macros: { ...KATEX_MACROS },
      output: "htmlAndMathml",
    });
  } catch (err) {
    die(`${where}: bad TeX ${JSON.stringify(tex)}: ${err.message}`);
  }
}

// `$...$` inline and `$$...$$` display math as marked extensions, so that code spans and
// code blocks are left alone.
function mathExtensions(where) {
  return [
    {
      name: "displayMath",
      level: "block",
      start: (src) => src.match(/^ {0,3}\$\$/m)?.index,
      tokenizer(src) {
        const m = /^ {0,3}\$\$([\s\S]+?)\$\$[ \t]*(?:\n+|$)/.exec(src);
        if (m) return { type: "displayMath", raw: m[0], tex: m[1].trim() };
        return undefined;
      },
      renderer: (token) => renderTex(token.tex, true, where()) + "\n",
    },
    {
      name: "inlineMath",
      level: "inline",
      start: (src) => src.indexOf("$"),
      tokenizer(src) {
        const m = /^\$(?!\s)((?:\\.|[^\\$\n])+?)(?<!\s)\$(?![0-9])/.exec(src);
        if (m) return { type: "inlineMath", raw: m[0], tex: m[1] };
        return undefined;
      },
      renderer: (token) => renderTex(token.tex, false, where()),
    },
  ];
}

const escapeHtml = (s) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

// Split the source into slides at lines that are exactly `---` (outside code fences).
function splitSlides(source) {
  const slides = [];
  let current = [];
  let startLine = 1;
  let fence = null;
  source.split("\n").forEach((line, i) => {
    const f = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (fence === null) fence = f[1][0];
      else if (f[1][0] === fence) fence = null;
    }
    if (fence === null && /^---\s*$/.test(line)) {
      slides.push({ text: current.join("\n"), line: startLine });
      current = [];
      startLine = i + 2;
    } else current.push(line);
  });
  slides.push({ text: current.join("\n"), line: startLine });
  return slides.filter((s) => s.text.trim() !== "");
}

// `<!-- .slide: class="x" data-foo="y" -->` -> attributes of the <section>;
// a line `Note:` starts the speaker notes; `::: name` ... `:::` wraps in <div class="name">.
function preprocess(text) {
  let attrs = "";
  text = text.replace(/<!--\s*\.slide:\s*([\s\S]*?)-->/g, (_, a) => {
    attrs += " " + a.trim();
    return "";
  });
  const lines = text.split("\n");
  const body = [];
  let notes = null;
  let fence = null;
  let depth = 0;
  for (const line of lines) {
    const f = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (f) {
      if (fence === null) fence = f[1][0];
      else if (f[1][0] === fence) fence = null;
    }
    const target = notes ?? body;
    if (fence === null && notes === null && /^Note:/.test(line)) {
      notes = [line.replace(/^Note:\s*/, "")];
      continue;
    }
    const div = fence === null ? /^:::\s*([\w-]*(?:\s+[\w-]+)*)\s*$/.exec(line) : null;
    if (div && div[1]) {
      depth++;
      target.push("", `<div class="${div[1]}" data-md-div>`, "");
    } else if (div) {
      if (depth === 0) return { error: "a ':::' closes no open ':::' block" };
      depth--;
      target.push("", "</div>", "");
    } else target.push(line);
  }
  if (depth !== 0) return { error: "a ':::' block is not closed" };
  return { attrs: attrs.trim(), body: body.join("\n"), notes: notes && notes.join("\n") };
}

function renderSlide(slide, index) {
  const where = () => `slides.md slide ${index + 1} (line ${slide.line})`;
  const pre = preprocess(slide.text);
  if (pre.error) die(`${where()}: ${pre.error}`);
  const md = new Marked({ gfm: true, breaks: false });
  md.use({ extensions: mathExtensions(where) });
  md.use({
    renderer: {
      // `![alt](src "caption")` gets a caption below it.
      image({ href, title, text }) {
        const img = `<img src="${escapeHtml(href)}" alt="${escapeHtml(text)}">`;
        return title ? `${img}<span class="caption">${escapeHtml(title)}</span>` : img;
      },
    },
  });
  // A paragraph that is just one image, at the top level of the slide, becomes a
  // stretched figure: reveal.js sizes it to fill the height the rest of the slide leaves.
  const tokens = md.lexer(pre.body);
  let depth = 0;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t.type === "html" && /data-md-div/.test(t.raw)) depth++;
    else if (t.type === "html" && /^<\/div>/.test(t.raw.trim())) depth--;
    const inner = t.type === "paragraph" ? t.tokens.filter((x) => !(x.type === "text" && !x.text.trim())) : [];
    if (depth === 0 && inner.length === 1 && inner[0].type === "image") {
      const { href, title, text } = inner[0];
      let html = `<img class="r-stretch figure" src="${escapeHtml(href)}" alt="${escapeHtml(text)}">\n`;
      if (title) html += `<p class="caption">${escapeHtml(title)}</p>\n`;
      tokens[i] = { type: "html", raw: html, text: html, block: true, pre: false };
    }
  }
  const html = md.parser(tokens).replace(/ data-md-div/g, "");
  const notes = pre.notes ? `<aside class="notes">\n${md.parse(pre.notes)}</aside>\n` : "";
  const heading = /<h[12][^>]*>([\s\S]*?)<\/h[12]>/.exec(html);
  const title = heading ? heading[1].replace(/<[^>]+>/g, "").trim() : `slide ${index + 1}`;
  return { html: `<section${pre.attrs ? " " + pre.attrs : ""}>\n${html}${notes}</section>`, title, where: where() };
}

// ---------------------------------------------------------------------------
// Inlining

function dataUri(mime, buffer) {
  return `data:${mime};base64,${buffer.toString("base64")}`;
}

const MIME = {
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".svg": "image/svg+xml",
  ".gif": "image/gif",
  ".webp": "image/webp",
};

// Shrink `rgba` (width x height x 4 bytes) to dw x dh by area averaging.
function downscale(rgba, width, height, dw, dh) {
  // For each output column (row): the input columns (rows) it covers, with their weights.
  const spans = (n, dn) => {
    const step = n / dn;
    return Array.from({ length: dn }, (_, o) => {
      const a = o * step;
      const b = a + step;
      const span = [];
      for (let i = Math.floor(a); i < Math.min(Math.ceil(b), n); i++) {
        span.push([i, (Math.min(i + 1, b) - Math.max(i, a)) / step]);
      }
      return span;
    });
  };
  const cols = spans(width, dw);
  const rows = spans(height, dh);
  const narrow = new Float64Array(dw * height * 4); // horizontal pass
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < dw; x++) {
      const d = (y * dw + x) * 4;
      for (const [ix, w] of cols[x]) {
        const s = (y * width + ix) * 4;
        narrow[d] += rgba[s] * w;
        narrow[d + 1] += rgba[s + 1] * w;
        narrow[d + 2] += rgba[s + 2] * w;
        narrow[d + 3] += rgba[s + 3] * w;
      }
    }
  }
  const out = Buffer.alloc(dw * dh * 4);
  const line = new Float64Array(dw * 4); // vertical pass, one output row at a time
  for (let y = 0; y < dh; y++) {
    line.fill(0);
    for (const [iy, w] of rows[y]) {
      const s = iy * dw * 4;
      for (let i = 0; i < dw * 4; i++) line[i] += narrow[s + i] * w;
    }
    for (let i = 0; i < dw * 4; i++) out[y * dw * 4 + i] = Math.min(255, Math.round(line[i]));
  }
  return out;
}

// The scale that fits width x height into MAX_FIGURE (1 when it fits already).
const fitScale = (width, height) => Math.min(1, MAX_FIGURE.width / width, MAX_FIGURE.height / height);

// A JPEG figure is kept as it is, unless it is larger than MAX_FIGURE: then it is shrunk to
// fit and encoded again (4:4:4, JPEG_QUALITY).
function encodeJpeg(file, buffer) {
  let image;
  try {
    image = jpeg.decode(buffer, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
  } catch (err) {
    die(`${file}: cannot read this JPEG (${err.message || err})`);
  }
  const { width, height } = image;
  const scale = fitScale(width, height);
  if (scale === 1) return { mime: "image/jpeg", data: buffer, width, height };
  const dw = Math.round(width * scale);
  const dh = Math.round(height * scale);
  const data = downscale(image.data, width, height, dw, dh);
  return { mime: "image/jpeg", data: jpeg.encode({ data, width: dw, height: dh }, JPEG_QUALITY).data, width: dw, height: dh };
}

// PNG figures made by matplotlib from photos are large. A figure larger than MAX_FIGURE
// is shrunk to fit it, and an opaque one is stored as JPEG (4:4:4, JPEG_QUALITY) when that
// saves at least JPEG_MIN_SAVING: several times smaller, the same on a slide. Figures with
// transparency, and flat plots that PNG compresses well, stay PNG. JPEG figures: encodeJpeg.
function encodeFigure(file, buffer, keepPng) {
  const ext = path.extname(file).toLowerCase();
  if (ext === ".jpg" || ext === ".jpeg") return encodeJpeg(file, buffer);
  if (ext !== ".png" || keepPng) return { mime: MIME[ext], data: buffer };
  const png = PNG.sync.read(buffer);
  let { width, height, data } = png;
  // The PNG candidate: the original, or the shrunk figure when it is smaller in bytes too
  // (a flat plot can compress better at full size).
  let asPng = { data: buffer, width, height };
  const scale = fitScale(width, height);
  if (scale < 1) {
    const dw = Math.round(width * scale);
    const dh = Math.round(height * scale);
    data = downscale(data, width, height, dw, dh);
    [width, height] = [dw, dh];
    const out = new PNG({ width, height });
    data.copy(out.data);
    const smaller = PNG.sync.write(out, { deflateLevel: 9 });
    if (smaller.length < buffer.length) asPng = { data: smaller, width, height };
  }
  for (let i = 3; i < data.length; i += 4) {
    if (data[i] !== 255) return { mime: "image/png", ...asPng };
  }
  // The JPEG candidate: the (shrunk) pixels, used when it saves at least JPEG_MIN_SAVING.
  const jpg = jpeg.encode({ data, width, height }, JPEG_QUALITY).data;
  if (jpg.length < (1 - JPEG_MIN_SAVING) * asPng.data.length) return { mime: "image/jpeg", data: jpg, width, height };
  return { mime: "image/png", ...asPng };
}

// Replace every <img src> with a data: URI. `images/...` means the project's figure folder
// (--images); other relative paths are relative to presentation/.
function inlineImages(slides, opts) {
  const missing = [];
  const cache = new Map();
  const report = [];
  for (const s of slides) {
    s.html = s.html.replace(/(<img\b[^>]*?\bsrc=")([^"]*)(")/g, (all, a, src, b) => {
      if (/^[a-z][a-z0-9+.-]*:/i.test(src) || src.startsWith("//")) {
        die(`${s.where}: image ${src} is not a local file; the deck must not load anything from the web`);
      }
      const rel = decodeURI(src);
      const file = rel.startsWith("images/")
        ? path.join(opts.images, rel.slice("images/".length))
        : path.resolve(HERE, rel);
      if (!fs.existsSync(file)) {
        missing.push(`  ${s.where}: ${src} -> ${file}`);
        return all;
      }
      const ext = path.extname(file).toLowerCase();
      if (!MIME[ext]) die(`${s.where}: ${src}: unsupported image type ${ext}`);
      if (!cache.has(file)) {
        const raw = fs.readFileSync(file);
        const enc = encodeFigure(file, raw, opts.keepPng);
        cache.set(file, dataUri(enc.mime, enc.data));
        const dims = enc.width ? ` ${enc.width}x${enc.height}` : "";
        const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
        report.push(`${path.relative(REPO, file)}: ${kib(raw.length)} -> ${kib(enc.data.length)} ${enc.mime}${dims}`);
      }
      return a + cache.get(file) + b;
    });
  }
  if (missing.length) {
    die(
      `missing figure(s):\n${missing.join("\n")}\n` +
        `The figures in images/ are generated by the project's code; generate them first, ` +
        `or point the build at another folder with --images DIR (or SLIDES_IMAGES=DIR).`,
    );
  }
  report.forEach((r) => log(`figure ${r}`));
}

function readModule(rel) {
  const file = path.join(NODE_MODULES, rel);
  if (!fs.existsSync(file)) die(`${file} is missing: run \`npm ci\` in presentation/ (build.sh does)`);
  return fs.readFileSync(file, "utf8");
}

// KaTeX's stylesheet with its fonts as data: URIs: woff2 only (every browser that runs
// reveal.js reads woff2), and only the font families that the rendered math can use (a
// family is used when every class in one of the selectors that set it occurs in the HTML).
function katexCss(html) {
  const css = readModule("katex/dist/katex.min.css");
  const used = new Set();
  for (const m of html.matchAll(/class="([^"]*)"/g)) m[1].split(/\s+/).forEach((c) => used.add(c));
  const families = new Set();
  for (const m of css.matchAll(/([^{}]+)\{([^{}]*)\}/g)) {
    const [, selectors, body] = m;
    if (selectors.trim().startsWith("@")) continue;
    const family = /font(?:-family)?:[^;]*?(KaTeX_\w+)/.exec(body);
    if (!family) continue;
    const hit = selectors.split(",").some((sel) => [...sel.matchAll(/\.([\w-]+)/g)].every((c) => used.has(c[1])));
    if (hit) families.add(family[1]);
  }
  return css.replace(/@font-face\{([^{}]*)\}/g, (all, body) => {
    const family = /font-family:\s*"?(KaTeX_\w+)/.exec(body);
    if (!family) die(`unexpected @font-face in katex.min.css: ${all.slice(0, 120)}`);
    if (!families.has(family[1])) return "";
    const woff2 = /url\((?:fonts\/)?([^)]+\.woff2)\)/.exec(body);
    if (!woff2) die(`no woff2 font in katex.min.css: ${all.slice(0, 120)}`);
    const font = fs.readFileSync(path.join(NODE_MODULES, "katex/dist/fonts", woff2[1]));
    return "@font-face{" + body.replace(/src:[^;}]*/, `src:url(${dataUri("font/woff2", font)}) format("woff2")`) + "}";
  });
}

// Fonts from @fontsource packages (woff2, Latin subset) as data: URIs, so that the deck
// looks the same on every machine: Source Sans Pro for text (the font of reveal.js's white
// theme, whose own copies are four large woff files) and Source Code Pro for code.
const FONTS = [
  [
    "Source Sans Pro",
    "source-sans-pro",
    [[400, "normal"], [400, "italic"], [600, "normal"], [600, "italic"], [700, "normal"]],
  ],
  ["Source Code Pro", "source-code-pro", [[400, "normal"], [600, "normal"]]],
];

function fontCss() {
  const faces = [];
  for (const [family, pkg, styles] of FONTS) {
    for (const [weight, style] of styles) {
      const file = path.join(NODE_MODULES, `@fontsource/${pkg}/files/${pkg}-latin-${weight}-${style}.woff2`);
      if (!fs.existsSync(file)) die(`${file} is missing: run \`npm ci\` in presentation/`);
      faces.push(
        `@font-face{font-family:"${family}";font-style:${style};font-weight:${weight};` +
          `src:url(${dataUri("font/woff2", fs.readFileSync(file))}) format("woff2")}`,
      );
    }
  }
  return faces.join("\n");
}

// reveal.js's theme without its @font-face rules (fontCss() provides the fonts).
function themeCss() {
  return readModule("reveal.js/dist/theme/white.css").replace(/@font-face\{[^}]*\}/g, "");
}

function checkOffline(name, text) {
  // url(...) in a stylesheet must be a data: URI.
  for (const m of text.matchAll(/url\(\s*['"]?([^'")\s]+)/g)) {
    if (!m[1].startsWith("data:") && !m[1].startsWith("#")) die(`${name} refers to ${m[1]}: not inlined`);
  }
  if (/@import/.test(text)) die(`${name} has an @import: not self-contained`);
}

const safeInScript = (js) => js.replace(/<\/(script)/gi, "<\\/$1").replace(/<!--/g, "<\\!--");
const safeInStyle = (css) => css.replace(/<\/(style)/gi, "<\\/$1");

function page(slides, title) {
  const styles = [
    ["reveal.js/dist/reset.css", readModule("reveal.js/dist/reset.css")],
    ["reveal.js/dist/reveal.css", readModule("reveal.js/dist/reveal.css")],
    ["reveal.js/dist/theme/white.css", themeCss()],
    ["katex.min.css", katexCss(slides.map((s) => s.html).join("\n"))],
    ["@fontsource fonts", fontCss()],
    ["style.css", fs.readFileSync(path.join(HERE, "style.css"), "utf8")],
  ];
  styles.forEach(([name, css]) => checkOffline(name, css));
  const scripts = [readModule("reveal.js/dist/reveal.js"), readModule("reveal.js/dist/plugin/notes.js")];
  const config = {
    width: SLIDE.width,
    height: SLIDE.height,
    margin: SLIDE.margin,
    center: false,
    hash: true,
    controls: true,
    progress: true,
    slideNumber: "c/t",
    transition: "fade",
    transitionSpeed: "fast",
    pdfMaxPagesPerSlide: 1,
    pdfSeparateFragments: false,
  };
  // default-src 'none': the page may load nothing but what is inside it, except itself in
  // a frame (the speaker view, key S, shows the current and the next slide in frames).
  const csp = [
    "default-src 'none'",
    "frame-src 'self'",
    "script-src 'unsafe-inline'",
    "style-src 'unsafe-inline'",
    "img-src data: blob:",
    "font-src data:",
    "media-src data: blob:",
  ].join("; ");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta name="generator" content="presentation/build.mjs from presentation/slides.md">
<title>${escapeHtml(title)}</title>
${styles.map(([name, css]) => `<style>/* ${name} */\n${safeInStyle(css)}\n</style>`).join("\n")}
</head>
<body>
<div class="reveal">
<div class="slides">
${slides.map((s) => s.html).join("\n")}
</div>
</div>
${scripts.map((js) => `<script>\n${safeInScript(js)}\n</script>`).join("\n")}
<script>
Reveal.initialize(Object.assign(${JSON.stringify(config)}, { plugins: [RevealNotes] }));
</script>
</body>
</html>
`;
}

// ---------------------------------------------------------------------------
// PDF

function findChromium(preferred) {
  const candidates = preferred
    ? [preferred]
    : ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];
  for (const c of candidates) {
    if (c.includes("/")) {
      if (fs.existsSync(c)) return c;
      continue;
    }
    for (const dir of (process.env.PATH || "").split(path.delimiter)) {
      const p = path.join(dir, c);
      if (dir && fs.existsSync(p)) return p;
    }
  }
  die(
    `no Chromium found (${candidates.join(", ")}); install it (Debian: apt-get install chromium), ` +
      `set CHROMIUM=/path/to/chromium, or build only the HTML with --no-pdf`,
  );
}

function pdfDate() {
  const epoch = process.env.SOURCE_DATE_EPOCH ? Number(process.env.SOURCE_DATE_EPOCH) : 0;
  if (!Number.isFinite(epoch)) die(`SOURCE_DATE_EPOCH=${process.env.SOURCE_DATE_EPOCH} is not a number`);
  const d = new Date(epoch * 1000).toISOString(); // 1970-01-01T00:00:00.000Z
  return `D:${d.slice(0, 19).replace(/[-T:]/g, "")}+00'00'`;
}

// Chromium writes the print time into /CreationDate and /ModDate. Overwrite them in place
// with a fixed date of the same length, so that the cross-reference offsets stay valid.
function fixPdfDates(buffer) {
  let text = buffer.toString("latin1");
  const fixed = pdfDate();
  let count = 0;
  text = text.replace(/\/(CreationDate|ModDate)\s*\((D:[^)]*)\)/g, (all, key, date) => {
    count++;
    const value = fixed.length <= date.length ? fixed.padEnd(date.length, " ") : fixed.slice(0, date.length);
    return `/${key} (${value})`;
  });
  if (count === 0) log("note: no /CreationDate in the PDF to fix");
  return Buffer.from(text, "latin1");
}

// Pages in a PDF as Chromium writes it (each page object has `/Type /Page`).
function countPdfPages(buffer) {
  return (buffer.toString("latin1").match(/\/Type\s*\/Page\b(?!s)/g) || []).length;
}

// How long to wait for the page to load and reveal.js to lay it out for print, and how
// often to try to print it. The machine may be slow and busy (2 shared cores).
const PDF_TIMEOUT_MS = 180_000;
const PDF_ATTEMPTS = 3;

// Set before the page's own scripts run: reveal.js dispatches `pdf-ready` (it bubbles to
// the document) when the print layout is done.
const PDF_READY_INIT = `
  window.__slidesPdfReady = false;
  document.addEventListener("pdf-ready", () => { window.__slidesPdfReady = true; });
`;

// True (in the page) when the print layout is complete: reveal.js has said `pdf-ready`,
// every slide sits in its own .pdf-page (none is left outside one), the fonts are loaded
// and every image has loaded.
function printLayoutReady(slides) {
  if (!window.__slidesPdfReady || typeof Reveal === "undefined" || !Reveal.isReady()) return false;
  if (!document.documentElement.classList.contains("reveal-print")) return false;
  const pages = document.querySelectorAll(".reveal .slides .pdf-page");
  if (pages.length !== slides) return false;
  if (document.querySelectorAll(".reveal .slides > section").length !== 0) return false;
  if ([...pages].some((p) => p.querySelectorAll(":scope > section").length !== 1)) return false;
  if (document.fonts.status !== "loaded") return false;
  return [...document.images].every((img) => img.complete && img.naturalWidth > 0);
}

// What printLayoutReady() waits for, for the error message when it times out.
function printLayoutState(slides) {
  const images = [...document.images];
  return [
    `pdf-ready: ${Boolean(window.__slidesPdfReady)}`,
    `${document.querySelectorAll(".reveal .slides .pdf-page").length}/${slides} .pdf-page`,
    `${document.querySelectorAll(".reveal .slides > section").length} slides outside one`,
    `fonts ${document.fonts.status}`,
    `${images.filter((img) => img.complete && img.naturalWidth > 0).length}/${images.length} images loaded`,
  ].join(", ");
}

// Then (in the page): every image decoded, and two more frames so that the last layout
// has been painted.
async function settle() {
  await document.fonts.ready;
  await Promise.all([...document.images].map((img) => img.decode()));
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return true;
}

// Print the deck with the system Chromium driven by Playwright (playwright-core; it never
// downloads a browser): open slides.html?print-pdf, wait until reveal.js's print layout is
// complete, print, and check that the PDF has one page per slide. A wrong PDF is printed
// again, up to PDF_ATTEMPTS times, then the build fails.
async function printPdf(htmlFile, pdfFile, slideCount, opts) {
  const chromiumPath = findChromium(opts.chromium);
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (err) {
    die(`playwright-core is missing (${err.message}): run \`npm ci\` in presentation/ (build.sh does)`);
  }
  const url = pathToFileURL(htmlFile).href + "?print-pdf";
  log(`printing ${path.basename(pdfFile)} with ${chromiumPath}`);
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      timeout: PDF_TIMEOUT_MS,
      args: [
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--hide-scrollbars",
        "--mute-audio",
        "--run-all-compositor-stages-before-draw",
      ],
    });
  } catch (err) {
    die(`could not start ${chromiumPath} through Playwright: ${err.message}`);
  }
  const failures = [];
  try {
    for (let attempt = 1; attempt <= PDF_ATTEMPTS; attempt++) {
      const context = await browser.newContext({
        viewport: { width: 800, height: 600 },
        deviceScaleFactor: 1,
        offline: true, // the page loads nothing from the network (its CSP says so too)
      });
      context.setDefaultTimeout(PDF_TIMEOUT_MS);
      const errors = [];
      try {
        await context.addInitScript(PDF_READY_INIT);
        const page = await context.newPage();
        page.on("pageerror", (err) => errors.push(`page error: ${err.message}`));
        await page.goto(url, { waitUntil: "load", timeout: PDF_TIMEOUT_MS });
        try {
          await page.waitForFunction(printLayoutReady, slideCount, { timeout: PDF_TIMEOUT_MS, polling: 250 });
        } catch (err) {
          const state = await page.evaluate(printLayoutState, slideCount).catch(() => "unknown");
          throw new Error(`reveal.js's print layout was not ready after ${PDF_TIMEOUT_MS / 1000} s (${state}): ${err.message}`);
        }
        await page.evaluate(settle);
        if (!(await page.evaluate(printLayoutReady, slideCount))) throw new Error("the print layout changed while settling");
        const pdf = await page.pdf({
          preferCSSPageSize: true,
          printBackground: true,
          displayHeaderFooter: false,
          tagged: true,
          outline: true,
        });
        const pages = countPdfPages(pdf);
        if (errors.length) throw new Error(errors.join("; "));
        if (pages !== slideCount) throw new Error(`the PDF has ${pages} page(s) for ${slideCount} slides`);
        fs.writeFileSync(pdfFile, fixPdfDates(pdf));
        if (attempt > 1) log(`printed the PDF on attempt ${attempt}`);
        return;
      } catch (err) {
        const message = `attempt ${attempt}/${PDF_ATTEMPTS}: ${err.message.split("\n")[0]}`;
        failures.push(message);
        log(`PDF ${message}`);
      } finally {
        await context.close().catch(() => {});
      }
    }
  } finally {
    await browser.close().catch(() => {});
  }
  die(`could not print a PDF with one page per slide (${slideCount}):\n  ${failures.join("\n  ")}`);
}

// ---------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(opts.source)) die(`${opts.source} does not exist`);
  const source = fs.readFileSync(opts.source, "utf8").replace(/\r\n?/g, "\n");
  const slides = splitSlides(source).map(renderSlide);
  if (slides.length === 0) die(`${opts.source} has no slides`);
  inlineImages(slides, opts);
  const html = page(slides, slides[0].title);
  fs.mkdirSync(opts.out, { recursive: true });
  const htmlFile = path.join(opts.out, "slides.html");
  fs.writeFileSync(htmlFile, html);
  const size = (f) => `${(fs.statSync(f).size / 1024 / 1024).toFixed(2)} MiB`;
  log(`wrote ${htmlFile} (${slides.length} slides, ${size(htmlFile)})`);
  const outputs = [htmlFile];
  if (opts.pdf) {
    const pdfFile = path.join(opts.out, "slides.pdf");
    await printPdf(htmlFile, pdfFile, slides.length, opts);
    log(`wrote ${pdfFile} (${size(pdfFile)})`);
    outputs.push(pdfFile);
  }
  for (const f of outputs) {
    if (fs.statSync(f).size > BUDGET_BYTES) {
      log(`warning: ${path.basename(f)} is ${size(f)}, over the ${BUDGET_MIB} MiB budget: save the figures smaller`);
    }
  }
}

main().catch((err) => {
  if (err instanceof BuildError) {
    process.stderr.write(`[slides] error: ${err.message}\n`);
  } else {
    process.stderr.write(`[slides] error: ${err.stack || err}\n`);
  }
  process.exit(1);
});
