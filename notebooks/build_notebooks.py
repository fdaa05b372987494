"""Write the three exploration notebooks (outputs stripped) from the cell lists below.

The notebooks only call linkage (``linkage.report.explore``, ``linkage.report.pictures``) and plot with
pandas/matplotlib; every aggregation lives in the library, where it is tested. Edit the cells here and
run ``python notebooks/build_notebooks.py`` so the notebooks stay reproducible; ``tests/test_notebooks.py``
executes them top to bottom on the bundled example.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import matplotlib.pyplot as plt
import pandas as pd

from linkage.report import explore, pictures

pd.set_option("display.width", 160)
pd.set_option("display.max_colwidth", 60)
store_path = explore.example_store()  # runs `linkage run` on examples/ into a temporary store
store = explore.open_store(store_path)
store_path"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01_explore_reports.ipynb": [
        ("md", "# 01 · Exploring the reports\n\n"
               "What came in: reports (meldingen) over time per category, who reports, which addresses and "
               "businesses are mentioned most, and where (postcode areas). Runs on the bundled example in "
               "`examples/`; all aggregations come from `linkage.report.explore`."),
        ("code", SETUP),
        ("md", "## Reports over time, per category"),
        ("code", "per_month = explore.reports_over_time(store, freq=\"M\")\n"
                 "ax = per_month.plot.area(figsize=(11, 4.5), linewidth=0, colormap=\"tab20\")\n"
                 "ax.set(title=\"Reports per month and category\", xlabel=\"\", ylabel=\"reports\")\n"
                 "ax.legend(loc=\"upper left\", bbox_to_anchor=(1.0, 1.0), frameon=False)\n"
                 "plt.show()\n"
                 "per_month.sum().rename(\"reports\").to_frame()"),
        ("md", "## Reporters per type\n\nKnown reporters are counted by their pseudonymous id; anonymous "
               "reports have no reporter."),
        ("code", "by_type = explore.reporters_per_type(store)\n"
                 "ax = by_type.plot.bar(figsize=(7, 3.5), rot=0, title=\"Reports and reporters per reporter type\")\n"
                 "ax.set_xlabel(\"\")\n"
                 "plt.show()\n"
                 "by_type"),
        ("md", "## The most-mentioned addresses and businesses\n\nA hub address (a large flat, a "
               "mass-registration address) shows up here; the graph stage weighs such hubs down."),
        ("code", "addresses = explore.top_mentioned(store, \"address\", 10)\n"
                 "businesses = explore.top_mentioned(store, \"business\", 10)\n"
                 "fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5))\n"
                 "addresses.iloc[::-1].plot.barh(x=\"label\", y=\"reports\", ax=left, legend=False, color=\"#e69f00\",\n"
                 "                               title=\"Addresses in the most reports\")\n"
                 "businesses.iloc[::-1].plot.barh(x=\"label\", y=\"reports\", ax=right, legend=False, color=\"#009e73\",\n"
                 "                                title=\"Businesses in the most reports\")\n"
                 "left.set_ylabel(\"\")\n"
                 "right.set_ylabel(\"\")\n"
                 "fig.tight_layout()\n"
                 "plt.show()"),
        ("code", "addresses"),
        ("md", "## Where: reports per postcode area\n\nA map without map data: Dutch postcodes run roughly "
               "from 1 (Amsterdam, Noord-Holland) to 9 (Groningen, Friesland), so a grid of the first digit "
               "(rows) by the second (columns) is a coarse map. The second grid zooms in on the busiest "
               "three-digit areas."),
        ("code", "grid = explore.postcode_grid(store, digits=2)\n"
                 "fig, ax = plt.subplots(figsize=(7, 6))\n"
                 "image = ax.imshow(grid.values, cmap=\"YlOrRd\")\n"
                 "ax.set_xticks(range(grid.shape[1]), grid.columns)\n"
                 "ax.set_yticks(range(grid.shape[0]), grid.index)\n"
                 "ax.set(xlabel=\"second digit of the postcode\", ylabel=\"first digit\",\n"
                 "       title=\"Reports per two-digit postcode area\")\n"
                 "fig.colorbar(image, ax=ax, label=\"reports\")\n"
                 "plt.show()"),
        ("code", "fine = explore.postcode_grid(store, digits=3)\n"
                 "busiest = fine.loc[fine.sum(axis=1).nlargest(15).index].sort_index()\n"
                 "fig, ax = plt.subplots(figsize=(7, 6))\n"
                 "image = ax.imshow(busiest.values, cmap=\"YlOrRd\")\n"
                 "ax.set_xticks(range(busiest.shape[1]), busiest.columns)\n"
                 "ax.set_yticks(range(busiest.shape[0]), busiest.index)\n"
                 "ax.set(xlabel=\"third digit\", ylabel=\"first two digits\", title=\"The 15 busiest areas, by third digit\")\n"
                 "fig.colorbar(image, ax=ax, label=\"reports\")\n"
                 "plt.show()"),
        ("code", "store.close()"),
    ],
    "02_entity_resolution.ipynb": [
        ("md", "# 02 · How mentions became entities\n\n"
               "Entity resolution scores pairs of mentions with a Fellegi-Sunter model whose weights are "
               "learned without labels (EM). Here: how much was merged, the score distribution, the learned "
               "field weights, the hardest (borderline) pairs with their explanation, and what term "
               "frequency does."),
        ("code", SETUP),
        ("md", "## Mentions and entities per type"),
        ("code", "explore.resolution_summary(store)"),
        ("md", "## Score distribution\n\nMatch weight in bits of the scored pairs the run kept (links, likely "
               "matches and the cannot-links inside linked groups). Pairs right of 0 bits (plus the prior) "
               "lean towards *same*."),
        ("code", "pairs = explore.er_pairs(store)\n"
                 "axes = pairs.hist(column=\"weight\", by=\"entity_type\", bins=40, figsize=(12, 3.5), layout=(1, 3),\n"
                 "                  sharex=True, color=\"#0072b2\")\n"
                 "plt.suptitle(\"Match weight (bits) of scored pairs\", y=1.04)\n"
                 "plt.show()\n"
                 "pairs.groupby(\"entity_type\")[[\"weight\", \"probability\"]].describe().round(2)"),
        ("md", "## Learned field weights\n\nPer comparison and level: `m` (how often true matches land in "
               "the level), `u` (how often non-matches do) and the weight `log2(m/u)`. *Missing* weighs 0."),
        ("code", "weights = explore.er_field_weights(store)\n"
                 "person = weights[(weights.entity_type == \"person\") & (weights.level != \"missing\")]\n"
                 "ax = person.pivot(index=\"comparison\", columns=\"level\", values=\"weight\").plot.barh(\n"
                 "    figsize=(10, 5), title=\"Person: weight (bits) per comparison level\")\n"
                 "ax.axvline(0, color=\"black\", linewidth=0.8)\n"
                 "ax.legend(loc=\"upper left\", bbox_to_anchor=(1.0, 1.0), frameon=False)\n"
                 "plt.show()\n"
                 "weights.round(4)"),
        ("md", "## Borderline pairs and their explanation\n\nThe pairs whose probability is closest to the "
               "match threshold: the decisions most worth a human look (`linkage judge`)."),
        ("code", "explore.borderline_pairs(store, n=8)"),
        ("code", "for explanation in explore.explain_borderline(store, n=3):\n"
                 "    print(explanation.to_text(), end=\"\\n\\n\")"),
        ("md", "## Effect of term frequency\n\nAn exact agreement on a common value (a frequent surname) is "
               "worth less than one on a rare value: the weight is `log2(m / frequency)` instead of a flat "
               "`log2(m / u)`."),
        ("code", "tf = explore.tf_effect(store, \"person\")\n"
                 "ax = tf.iloc[::-1].plot.barh(x=\"value\", y=[\"weight_with_tf\", \"weight_without_tf\"], figsize=(9, 6),\n"
                 "                             title=f\"Exact match on {tf.attrs.get('comparison', 'a name')}: weight (bits)\")\n"
                 "ax.set_ylabel(\"\")\n"
                 "ax.legend(loc=\"lower right\")\n"
                 "plt.show()\n"
                 "tf"),
        ("code", "store.close()"),
    ],
    "03_clusters.ipynb": [
        ("md", "# 03 · Clusters\n\nThe top clusters drawn as networks (reports are grey squares, entities "
               "circles coloured by type and sized by the number of reports), what drives each cluster's "
               "score, and how clusters change when new reports arrive."),
        ("code", SETUP),
        ("md", "## The top clusters"),
        ("code", "top = explore.top_clusters(store, n=6)\ntop"),
        ("code", "fig, axes = plt.subplots(2, 2, figsize=(20, 14))\n"
                 "fig.subplots_adjust(left=0.01, right=0.99, bottom=0.04, top=0.97, wspace=0.04, hspace=0.08)\n"
                 "for ax, cluster_id in zip(axes.flat, top[\"cluster_id\"]):\n"
                 "    pictures.plot_cluster(pictures.cluster_graph_for(store, cluster_id), ax=ax, title=cluster_id,\n"
                 "                          legend=False)\n"
                 "fig.legend(handles=pictures.legend_handles(), loc=\"lower center\", ncol=11, frameon=False)\n"
                 "plt.show()"),
        ("md", "The same picture as a file, or as an interactive page that works offline:\n"
               "`linkage cluster ID --picture out.png` (or `.svg`, `.html`)."),
        ("code", "pictures.draw_cluster(store, top[\"cluster_id\"][0], store_path.parent / \"top.html\")"),
        ("md", "## Signal breakdown per cluster\n\nEach bar is a cluster's score split into its signals "
               "(the points each signal adds)."),
        ("code", "signals = explore.signal_breakdown(store, n=10)\n"
                 "ax = signals.iloc[::-1].plot.barh(stacked=True, figsize=(11, 6), colormap=\"tab20\",\n"
                 "                                  title=\"What drives the top clusters\")\n"
                 "ax.legend(loc=\"upper left\", bbox_to_anchor=(1.0, 1.0), frameon=False)\n"
                 "plt.show()\n"
                 "signals.round(2)"),
        ("md", "## How clusters change between two runs\n\nFirst a run on the earliest 70 % of the reports, "
               "then a run with all of them into the same store. Cluster ids carry over when a cluster keeps "
               "most of its reports; otherwise clusters are created, merged, split or dissolved."),
        ("code", "early_files = explore.split_by_date(explore.example_files(), store_path.parent / \"early\", fraction=0.7)\n"
                 "runs_path = explore.example_store(early_files, workdir=store_path.parent / \"runs\")\n"
                 "with explore.open_store(runs_path) as runs:\n"
                 "    before = runs.report_clusters()\n"
                 "explore.example_store(explore.example_files(), workdir=store_path.parent / \"runs\")\n"
                 "with explore.open_store(runs_path) as runs:\n"
                 "    after = runs.report_clusters()\n"
                 "events, sizes = explore.compare_runs(before, after)\n"
                 "ax = events[\"event\"].value_counts().plot.bar(rot=0, figsize=(7, 3.5),\n"
                 "                                               title=\"Cluster changes from run 1 to run 2\")\n"
                 "plt.show()\n"
                 "sizes.head(15)"),
        ("code", "events[events[\"event\"] != \"kept\"].head(20)"),
        ("code", "store.close()"),
    ],
}


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """One notebook from (kind, source) pairs, with the python3 kernel and no outputs."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source) in enumerate(cells):
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"  # stable ids: rebuilding gives identical files
        nb.cells.append(cell)
    return nb


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(name, cells), HERE / name)


if __name__ == "__main__":
    main()
