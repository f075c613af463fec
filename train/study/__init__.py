"""The Sideways-against-BP study of `make reproduce` (train/reproduce.py, docs/study.md).

One module per step, each reading only what the steps before it wrote:

- `config`: the settings (`get_config`, variants "quick" and "tiny") and their checks;
- `runs`: trains every set-up in both modes and writes the raw results, `study.json`;
- `summary`: means and spreads over seeds, and the readings the report words (pure);
- `plots`: the figures, from the summary;
- `report`: docs/study.md, `report.md.template` filled with the summary's figures.
"""
