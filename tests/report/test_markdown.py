"""report.markdown.table: a '|' inside a cell stays inside that cell."""

from dlconcepts.report.markdown import table


def test_a_pipe_in_a_cell_is_escaped_so_the_row_keeps_its_columns():
    text = table([("measure", "value"), ("reconstruction −log p(x|z)", "21.7")])
    header, rule, row = text.strip().splitlines()
    assert row == "| reconstruction −log p(x\\|z) | 21.7 |"
    # Unescaped pipes delimit the columns: the row has as many as the header.
    assert row.replace("\\|", "").count("|") == header.count("|") == rule.count("|")
