"""The bone-group sensitivity chart with the counts real runs produce (groups with none or all lesions found)."""

import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from osteomet.report.charts import bone_group_sensitivity, sensitivity_figure


def test_groups_with_no_or_every_lesion_detected_are_drawn():
    reference = pd.DataFrame({"detected": [False, False, False, True, True, "True"],
                              "bone_group": ["spine"] * 3 + ["pelvis"] * 3})
    rates = bone_group_sensitivity(reference).set_index("bone_group")
    assert rates.loc["spine", "sensitivity"] == 0.0 and rates.loc["pelvis", "sensitivity"] == 1.0
    low, high = proportion_confint(0, 3, alpha=0.05, method="wilson")
    assert abs(rates.loc["spine", "ci_high"] - high) < 1e-12
    figure = sensitivity_figure(rates.reset_index())  # raised on a rounding-negative error bar before
    assert len(figure.axes[0].get_xticklabels()) == 2
