"""Attack: adversarial digits against the active model (FGSM, PGD), and a CapsNet catching them by reconstruction."""

import streamlit as st

from capsnet.explorer.navigation import enter_page

enter_page("Attack", "🎯")
st.title("Adversarial digits")

# After the title: these start TensorFlow.
from capsnet.attack import PGD_STEPS
from capsnet.explorer import attacking, insight_figures, picker, views
from capsnet.saliency import diverging_rgb

network = attacking.require_network()
digits = picker.require_test_images(network)
classes = network.classes

st.caption("A small change to every pixel, chosen along the gradient of the network's scores, can make a network "
           "read a digit as another class. A capsule network's decoder then redraws the digit from the winning "
           "capsule, of the wrong class: the reconstruction no longer resembles the input, and the distance between "
           "them gives the attack away (Frosst, Sabour & Hinton 2018, \"DARCCC\").")
if not network.capsnet:
    st.info("The active model is the baseline CNN: it has no capsules and no decoder. It can be attacked (below: its "
            "class probabilities before and after), but there is no reconstruction to catch the attack by. Pick a "
            "CapsNet in the sidebar for detection by reconstruction.")

image, label, caption = attacking.choose_digit(network, digits)
settings = attacking.choose_attack(classes)
adversarial = attacking.attack_digit(network, image, label, settings)
before, after = attacking.examine(network, image), attacking.examine(network, adversarial)

verdict = attacking.verdict(before.predicted, after.predicted, label, settings.target, classes)
st.markdown(f"## Prediction: {classes[before.predicted]} → {classes[after.predicted]}")
st.caption(f"{settings.describe()} · {verdict}")

columns = st.columns(5 if network.capsnet else 3)
views.show_digit(image, caption, scale=5, where=columns[0], alt="original")
views.show_digit(diverging_rgb(adversarial - image, settings.epsilon), "perturbation (red: brighter, blue: darker, "
                 "full colour at ±ε)", scale=5, where=columns[1], alt="perturbation")
views.show_digit(adversarial, "adversarial: what the model sees", scale=5, where=columns[2], alt="adversarial")
if network.capsnet:
    views.show_digit(before.reconstruction, f"reconstruction from capsule {classes[before.predicted]} (original)",
                     scale=5, where=columns[3], alt="reconstruction before")
    views.show_digit(after.reconstruction, f"reconstruction from capsule {classes[after.predicted]} (adversarial)",
                     scale=5, where=columns[4], alt="reconstruction after")
    limit, source = attacking.threshold(network)
    for name, examined in (("adversarial", after), ("original", before)):
        flagged = examined.distance > limit
        st.markdown(f"**{name.capitalize()}: {'flagged' if flagged else 'not flagged'}**: reconstruction distance "
                    f"{examined.distance:.2f} {'above' if flagged else 'below'} the threshold {limit:.2f}")
    st.caption(f"Distance: Euclidean, over the pixels, between the input and its reconstruction. Threshold: the 95th "
               f"percentile of clean test digits' distances ({source}), so 5% of real digits are flagged too.")
st.plotly_chart(insight_figures.before_after_figure(before.scores, after.scores, classes,
                                                    "Capsule lengths" if network.capsnet else "Class probabilities"),
                config={"displayModeBar": False}, key="attack.scores")

st.subheader("Attack success and detection over ε")
st.caption(f"Untargeted FGSM and PGD ({PGD_STEPS} steps) on the first {attacking.CURVE_DIGITS:,} test images of the "
           "model's dataset: the share of the digits it reads right that each attack makes it read wrong, and for a "
           "CapsNet the share of those successes that the reconstruction distance flags (crosses: the share of the "
           "failed attacks it flags, for the perturbation alone moves an input away from its reconstruction), and its "
           "ROC AUC as a detector (clean digits against successful adversarial ones).")
curves = attacking.curves_to_show(network)
if curves is None:
    st.button("Measure (tens of minutes per model on a CPU)", icon=":material/speed:",
              on_click=attacking.request_measurement, args=(network,))
    st.stop()
st.plotly_chart(insight_figures.attack_curves_figure(curves), config={"displayModeBar": False}, key="attack.curves")
st.dataframe(insight_figures.curves_table(curves), hide_index=True, column_config={
    column: st.column_config.NumberColumn(format="%.3f")
    for column in ("success rate", "flagged", "failed, flagged", "ROC AUC")})
