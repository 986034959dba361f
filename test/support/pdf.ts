/** Reads a PDF's text and page count in JavaScript (unpdf, a build of pdf.js), with no system program. */
import { readFile } from 'node:fs/promises';
import { extractTextItems } from 'unpdf';

export interface PdfText {
  pages: number;
  /**
   * The text laid out as it reads: on each page, the pieces sharing a baseline form one line, left to
   * right and separated by a space; lines top to bottom; pages separated by a form feed.
   */
  text: string;
}

export async function readPdf(source: string | Uint8Array): Promise<PdfText> {
  const data = typeof source === 'string' ? new Uint8Array(await readFile(source)) : source;
  const { totalPages, items } = await extractTextItems(data);
  const pages = items.map((page) => {
    const lines = new Map<number, Array<{ x: number; str: string }>>();
    for (const item of page) {
      if (item.str.trim() === '') continue;
      const y = Math.round(item.y);
      lines.set(y, [...(lines.get(y) ?? []), { x: item.x, str: item.str }]);
    }
    return [...lines.entries()]
      .sort(([a], [b]) => b - a)
      .map(([, line]) =>
        line
          .sort((a, b) => a.x - b.x)
          .map((p) => p.str)
          .join(' '),
      )
      .join('\n');
  });
  return { pages: totalPages, text: pages.join('\f') };
}
