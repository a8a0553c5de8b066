// Pages for areas this server version does not have yet, and for unknown URLs.

import { clear, h, link, pageHead } from "../ui.js";

const AREAS = {
  streams: ["Entity streams", "entity-streams"],
  projections: ["Projections", "projections"],
  webhooks: ["Webhooks", "webhooks"],
  audit: ["Audit log", "audit"],
};

export async function renderUnavailable(el, ctx) {
  const key = location.pathname.split("/")[1];
  const [title] = AREAS[key] || ["This area"];
  clear(el, pageHead(title),
    h("div", { class: "panel unavailable", "data-role": "unavailable" },
      h("div", { class: "icon", "aria-hidden": "true" }, "◌"),
      h("h2", null, "Not available in this version"),
      h("p", { class: "muted" },
        `${title} ${title.endsWith("s") ? "are" : "is"} part of the Ironflow platform but this server build does not include ${title.endsWith("s") ? "them" : "it"} yet. `,
        "Requests to this area's API answer “unimplemented” rather than pretending to work."),
      h("p", null, link("/", "Back to the overview"))));
}

export async function renderNotFound(el) {
  clear(el, pageHead("Page not found"),
    h("div", { class: "panel empty" },
      h("div", { class: "big" }, "There is no page at this address."),
      h("p", { class: "mono" }, location.pathname),
      h("p", null, link("/", "Go to the overview"))));
}
