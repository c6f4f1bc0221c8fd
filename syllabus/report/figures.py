"""The report's charts: plotly figures built from the model (model.py), each as an HTML fragment.

Each fragment is a `<div>` and the script that draws it, without plotly.js: the page inlines
the library once (render.py), so ten charts cost the 4.8 MB bundle once, not ten times.
plotly writes the data as JSON with `<`, `>` and `&` escaped, so a teacher's text in a hover
label cannot close the script. Only numbers and names the tool made (node paths, reasons)
go into the charts; the teacher's questions and answers stay in the page's escaped tables.
"""

from __future__ import annotations

from typing import Any

from .model import ROW_KINDS

NO_ROWS = "#d9d9d9"  # a taxonomy node the run has no row for, in the coverage chart
CONFIG = {"displaylogo": False, "responsive": True}


def _html(fig, name: str) -> str:
    import plotly.io as pio

    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 30, "t": 50, "b": 50})
    return pio.to_html(
        fig, include_plotlyjs=False, full_html=False, div_id=f"chart-{name}", config=CONFIG, validate=True
    )


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


# Generation runs ---------------------------------------------------------------------------
def generation_charts(model: dict[str, Any]) -> dict[str, str]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    charts: dict[str, str] = {}
    if model["stages"]:
        fig = go.Figure()
        stages = [s["stage"] for s in model["stages"]]
        for key, label in (
            ("requested", "requested"),
            ("from_cache", "from cache"),
            ("answered", "answered"),
            ("parsed", "parsed"),
            ("kept", "kept"),
        ):
            fig.add_bar(name=label, x=stages, y=[s.get(key) or 0 for s in model["stages"]])
        fig.update_layout(title="Requests per stage", barmode="group", height=380, yaxis_title="requests")
        charts["stages"] = _html(fig, "stages")
    if model["filters"]:
        reasons = list(model["filters"])
        fig = go.Figure(go.Bar(x=reasons, y=[model["filters"][r] for r in reasons], marker_color="#7f7f7f"))
        top = max(model["filters"].values())
        fig.update_layout(
            title="Rows dropped per filter" + ("" if top else ": none"),
            height=360,
            yaxis={"title": "rows", "rangemode": "tozero", **({} if top else {"range": [0, 1]})},
        )
        charts["filters"] = _html(fig, "filters")
    if model["nodes"]:
        charts["coverage"] = _html(coverage_figure(model["nodes"]), "coverage")
    for column, counts in model["mixes"].items():
        fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), marker_color="#ff7f0e"))
        fig.update_layout(title=f"{column.replace('_', ' ')} ({sum(counts.values())} rows)", height=320)
        charts[f"mix_{column}"] = _html(fig, f"mix_{column}")
    if model.get("skill_mix") and model["skill_mix"]["pairs"]:
        charts["skill_mix"] = _html(pairs_figure(model["skill_mix"]["pairs"]), "skill_mix")
    lengths = model["lengths"]
    if lengths["question_words"] or lengths["answer_words"]:
        fig = make_subplots(rows=1, cols=2, subplot_titles=("question length (words)", "answer length (words)"))
        for col, key, colour in ((1, "question_words", "#2ca02c"), (2, "answer_words", "#9467bd")):
            d = lengths[key]
            if d:
                fig.add_bar(
                    x=[int(k) for k in d["histogram"]],
                    y=list(d["histogram"].values()),
                    marker_color=colour,
                    name=key.split("_")[0],
                    row=1,
                    col=col,
                )
        fig.update_layout(title="Lengths", height=340, showlegend=False)
        charts["lengths"] = _html(fig, "lengths")
    return charts


def coverage_figure(nodes: list[dict[str, Any]]):
    """A sunburst of the taxonomy: every node the run planned or produced, sized alike, so a
    node with no rows is as visible as a full one, and coloured by its rows (grey: none)."""
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    rows: dict[str, int] = {}
    requested: dict[str, int] = {}
    for n in nodes:
        parts = n["node"].split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            rows[prefix] = rows.get(prefix, 0) + n["rows"]
            requested[prefix] = requested.get(prefix, 0) + (n.get("requested") or 0)
    ids = sorted(rows)
    top = max(rows.values()) or 1
    shade = {i: 0.25 + 0.5 * rows[i] / top for i in ids}  # mid blues: text stays readable on every sector
    colours = [NO_ROWS if rows[i] == 0 else sample_colorscale("Blues", [shade[i]])[0] for i in ids]
    text = ["#222" if rows[i] == 0 or shade[i] < 0.5 else "white" for i in ids]
    fig = go.Figure(
        go.Sunburst(
            ids=ids,
            labels=[i.rsplit("/", 1)[-1] for i in ids],
            parents=[i.rsplit("/", 1)[0] if "/" in i else "" for i in ids],
            customdata=[[rows[i], requested[i]] for i in ids],
            marker={"colors": colours, "line": {"color": "white", "width": 1}},
            texttemplate="%{label}<br>%{customdata[0]} rows",
            textfont={"color": text},
            hovertemplate="%{id}<br>%{customdata[0]} rows kept, %{customdata[1]} requested<extra></extra>",
        )
    )
    fig.update_layout(title="Taxonomy coverage (rows kept per node; grey: none)", height=560)
    return fig


def pairs_figure(pairs: list[dict[str, Any]]):
    """A discipline x discipline heatmap of the kept mixed rows combining each pair (symmetric)."""
    import plotly.graph_objects as go

    names = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    at = {name: i for i, name in enumerate(names)}
    grid: list[list[int | None]] = [[None] * len(names) for _ in names]
    for p in pairs:
        i, j = at[p["a"]], at[p["b"]]
        grid[i][j] = grid[j][i] = p["rows"]
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            x=names,
            y=names,
            colorscale="Blues",
            hovertemplate="%{y} + %{x}: %{z} rows<extra></extra>",
            colorbar={"title": "rows"},
        )
    )
    fig.update_layout(title="Pairs of disciplines combined (kept rows)", height=260 + 40 * len(names))
    return fig


# Loop runs ---------------------------------------------------------------------------------
def loop_charts(model: dict[str, Any]) -> dict[str, str]:
    import plotly.graph_objects as go

    charts: dict[str, str] = {}
    nodes = model["nodes"]
    scored = [r for r in model["rounds"] if r["scores"]]
    if scored and nodes:
        fig = go.Figure()
        x = [r["index"] for r in scored]
        for node in nodes:
            fig.add_scatter(x=x, y=[r["scores"]["dev"].get(node) for r in scored], mode="lines+markers", name=node)
        fig.add_scatter(
            x=x,
            y=[r["scores"]["dev_mean"] for r in scored],
            mode="lines",
            name="mean over nodes",
            line={"dash": "dash", "color": "black", "width": 3},
        )
        fig.update_layout(
            title="Dev accuracy per node and round",
            height=420,
            xaxis={"title": "round", "dtick": 1},
            yaxis={"title": "dev accuracy", "tickformat": ".0%", "range": [-0.05, 1.05]},
        )
        charts["dev_lines"] = _html(fig, "dev_lines")
        z = [[r["scores"]["dev"].get(node) for r in scored] for node in nodes]
        fig = go.Figure(
            go.Heatmap(
                z=z,
                x=[f"round {i}" for i in x],
                y=nodes,
                zmin=0,
                zmax=1,
                colorscale="RdYlGn",
                text=[[_pct(v) for v in row] for row in z],
                texttemplate="%{text}",
                hovertemplate="%{y}, %{x}: %{text}<extra></extra>",
                colorbar={"tickformat": ".0%"},
            )
        )
        fig.update_layout(title="Dev accuracy: node x round", height=max(300, 60 + 34 * len(nodes)))
        charts["dev_heatmap"] = _html(fig, "dev_heatmap")
    allocated = [r for r in model["rounds"] if r["decisions"]]
    if allocated:
        fig = go.Figure()
        x = [f"round {r['index']}" for r in allocated]
        for node in nodes:
            decided: list[dict[str, Any]] = [
                next((d for d in r["decisions"] if d.get("node") == node), {}) for r in allocated
            ]
            fig.add_bar(
                name=node,
                x=x,
                y=[d.get("rows", 0) for d in decided],
                customdata=[[d.get("reason", "")] for d in decided],
                hovertemplate=f"{node}: %{{y}} rows<br>%{{customdata[0]}}<extra></extra>",
            )
        fig.update_layout(title="Budget per round (rows per node)", barmode="stack", height=420, yaxis_title="rows")
        charts["budgets"] = _html(fig, "budgets")
    with_rows = [r for r in model["rounds"] if r["rows"]]
    if with_rows:
        fig = go.Figure()
        x = [f"round {r['index']}" for r in with_rows]
        for kind in ROW_KINDS:
            fig.add_bar(
                name=kind if kind != "pairs" else "pairs (DPO)", x=x, y=[r["rows"].get(kind, 0) for r in with_rows]
            )
        fig.update_layout(title="Training data per round, by kind", barmode="group", height=380, yaxis_title="rows")
        charts["rows"] = _html(fig, "rows")
    test = model.get("test")
    if test:
        fig = go.Figure()
        blocks = [(n, b) for n, b in test["nodes"].items() if b] + [("all nodes", test["pooled"])]
        if test.get("group", {}).get("items"):
            blocks.append(("weak nodes", test["group"]))
        fig.add_bar(
            x=[n for n, _ in blocks],
            y=[b["difference"] for _, b in blocks],
            error_y={"type": "data", "array": [2 * (b["se"] or 0.0) for _, b in blocks], "visible": True},
            customdata=[[b["items"], b["p_value"], b["verdict"]] for _, b in blocks],
            hovertemplate="%{x}: %{y:+.2f} (±2 SE)<br>%{customdata[0]} items, McNemar p %{customdata[1]:.3f}"
            "<br>%{customdata[2]}<extra></extra>",
        )
        fig.update_layout(
            title=f"Test items: round {test['best_round']}'s student minus the starting student (±2 SE)",
            height=400,
            yaxis_title="accuracy difference",
        )
        charts["test"] = _html(fig, "test")
    trained = [r for r in model["rounds"] if any(r["losses"].values())]
    if trained:
        fig = go.Figure()
        for r in trained:
            for method, points in r["losses"].items():
                if points:
                    fig.add_scatter(
                        x=[p[0] for p in points],
                        y=[p[1] for p in points],
                        mode="lines+markers",
                        name=f"round {r['index']} {method}",
                    )
        fig.update_layout(
            title="Training loss per round (SFT, then DPO)", height=380, xaxis_title="step", yaxis_title="loss"
        )
        charts["loss"] = _html(fig, "loss")
    if model["compare"] and scored:
        charts.update(compare_charts(model))
    return charts


def compare_charts(model: dict[str, Any]) -> dict[str, str]:
    import plotly.graph_objects as go

    charts: dict[str, str] = {}
    nodes = model["nodes"]
    scored = [r for r in model["rounds"] if r["complete"] and r["scores"]]
    untrained, last = scored[0], scored[-1]
    fig = go.Figure()
    fig.add_bar(name="untrained (round 0)", x=nodes, y=[untrained["scores"]["dev"].get(n) for n in nodes])
    fig.add_bar(
        name=f"{model['title']} (round {last['index']})", x=nodes, y=[last["scores"]["dev"].get(n) for n in nodes]
    )
    for other in model["compare"]:
        fig.add_bar(
            name=f"{other['title']} (round {other['last_round']})", x=nodes, y=[other["last"].get(n) for n in nodes]
        )
    fig.update_layout(
        title="Dev accuracy per node: this run against the compared runs (last round of each)",
        barmode="group",
        height=420,
        yaxis={"tickformat": ".0%", "range": [0, 1.05]},
    )
    charts["compare_nodes"] = _html(fig, "compare_nodes")
    fig = go.Figure()
    fig.add_scatter(
        x=[r["index"] for r in scored],
        y=[r["scores"]["dev_mean"] for r in scored],
        mode="lines+markers",
        name=model["title"],
    )
    for other in model["compare"]:
        fig.add_scatter(
            x=[p[0] for p in other["overall"]],
            y=[p[1] for p in other["overall"]],
            mode="lines+markers",
            name=other["title"],
        )
    fig.update_layout(
        title="Mean dev accuracy per round",
        height=360,
        xaxis={"title": "round", "dtick": 1},
        yaxis={"tickformat": ".0%", "range": [-0.05, 1.05]},
    )
    charts["compare_overall"] = _html(fig, "compare_overall")
    return charts
