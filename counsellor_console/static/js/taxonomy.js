// The codes a contact is recorded in (GET /api/taxonomy), in the page's language, loaded
// once per page; and a search key that ignores case and accents ("dhune" finds "Dhunë").
import { api } from "./api.js";
import { lang } from "./i18n.js";

let loading = null;

export function loadTaxonomy() {
  if (!loading) {
    loading = api.get(`/api/taxonomy?lang=${lang}`).then((answer) => {
      if (!answer.ok) {
        loading = null; // try again next time it is asked for
        return null;
      }
      return index(answer.data);
    });
  }
  return loading;
}

function index(tax) {
  const categories = new Map();
  for (const parent of tax.categories) {
    for (const child of parent.children) {
      categories.set(child.code, { code: child.code, name: child.name, parent: parent.name, parentCode: parent.code });
    }
    categories.set(parent.code, { code: parent.code, name: parent.name, parent: null, parentCode: null });
  }
  return { ...tax, categoryIndex: categories };
}

/** "Violence › Bullying" for a subcategory, the name alone for a category. */
export function categoryLabel(tax, code) {
  const row = tax && tax.categoryIndex.get(code);
  if (!row) return code;
  return row.parent ? `${row.parent} › ${row.name}` : row.name;
}

export function searchKey(text) {
  return String(text)
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase();
}
