"""Routing: how routing-by-agreement reaches a decision, round by round, for one digit."""

import numpy as np
import streamlit as st

from capsnet.explorer.navigation import enter_page

enter_page("Routing", "🔀")
st.title("Routing by agreement")

# After the title: these start TensorFlow.
from capsnet.explorer import explore, figures, insight, picker, state, views
from capsnet.imaging import to_float
from capsnet.preprocess import IMAGE_TYPES, MAX_UPLOAD_MB, PreprocessError, from_upload

model = picker.require_model()
config = model.predictor.net.config
digits = picker.require_test_images(model)
classes = model.classes
TEST, DRAWING, UPLOAD = "Test digit", "Last drawing", "Upload"
TOP_SENDERS = 10

grid = config.primary_grid
st.caption(f"Every primary capsule ({grid}×{grid} positions × {config.primary_channels} types, "
           f"{config.primary_capsules:,} in all) votes for every class capsule with its own matrix. Routing starts by "
           f"splitting each vote evenly over the {config.num_classes} classes, then, round after round, sends more "
           "of it to the classes whose output agrees with it: the couplings below. Step through the rounds.")


SHARED = [state.ROUTING_SOURCE, state.ROUTING_CLASS, state.ROUTING_POSITION, state.ROUTING_ROUND]


def choose_image() -> tuple[np.ndarray | None, str]:
    """The digit to route, from the widgets at the top of the page, and its caption."""
    sources = [TEST, DRAWING, UPLOAD] if state.DRAWING in st.session_state else [TEST, UPLOAD]
    state.from_url(SHARED, {state.ROUTING_SOURCE: lambda v: v in sources,
                            state.ROUTING_CLASS: lambda v: 0 <= v < len(classes),
                            state.ROUTING_POSITION: lambda v: v >= 0})
    pick = st.columns([1.6, 1, 1])
    source = pick[0].radio("Digit", sources, key=state.ROUTING_SOURCE, horizontal=True)
    if source == DRAWING:
        return st.session_state[state.DRAWING], "your last drawing"
    if source == UPLOAD:
        upload = st.file_uploader("A photo or scan of one digit", type=IMAGE_TYPES, key=state.ROUTING_UPLOAD,
                                  max_upload_size=MAX_UPLOAD_MB)
        if upload is None:
            return None, ""
        try:
            return from_upload(upload.getvalue()), upload.name
        except PreprocessError as error:  # unreadable, blank, too large: one line for the user
            st.warning(f"Could not use {upload.name}: {error}.")
            return None, ""
    index = views.pick_test_digit(digits, classes, state.ROUTING_CLASS, state.ROUTING_POSITION, pick[1], pick[2])
    return to_float(digits.images[index]), views.test_digit_caption(digits, index, classes)


image, caption = choose_image()
if image is None:
    st.stop()

trace = model.predictor.route(image)
routings = len(trace.couplings)
winner = int(np.argmax(trace.lengths[-1]))
if routings > 1:
    if st.session_state.get(state.ROUTING_ROUND) not in range(1, routings + 1):
        st.session_state[state.ROUTING_ROUND] = routings  # the last round first (also for a model with fewer)
    round_ = st.select_slider("Routing round", options=list(range(1, routings + 1)), key=state.ROUTING_ROUND,
                              help="The couplings used in that round, and the class capsules they produce.")
else:
    round_ = 1
    st.info("This model routes once: the couplings stay uniform, so there is no agreement to watch. "
            "A model trained with 3 routings shows it.")
state.to_url(SHARED, {state.ROUTING_SOURCE: TEST, state.ROUTING_CLASS: 0, state.ROUTING_POSITION: 0,
                     state.ROUTING_ROUND: routings})
couplings = trace.couplings[round_ - 1]
lengths = trace.lengths[round_ - 1]
leader = int(np.argmax(lengths))

left, middle, right = st.columns([1, 1.3, 1.3], gap="large")
with left:
    st.markdown(f"## Round {round_}: {classes[leader]}")
    st.caption(f"capsule {classes[leader]} is the longest after round {round_} of {routings} "
               f"(length {lengths[leader]:.3f}); the final prediction is {classes[winner]}.")
    views.show_digit(image, caption, scale=5, alt="routed input")
with middle:
    st.plotly_chart(figures.lengths_figure(lengths, highlight=leader, classes=classes),
                    config={"displayModeBar": False},
                    key="routing.lengths")
with right:
    st.plotly_chart(figures.rounds_figure(trace.lengths, round_, winner, classes), config={"displayModeBar": False},
                    key="routing.rounds")

st.subheader(f"Couplings in round {round_}")
st.caption(f"For each class capsule ({classes[0]} … {classes[-1]}), how much of their vote the primary capsules at "
           f"each of the {grid}×{grid} positions send to it, averaged over the {config.primary_channels} capsule "
           f"types. Each position's couplings over the {config.num_classes} classes sum to 1: round 1 is "
           f"{1 / config.num_classes:.2g} everywhere.")
maps = np.stack([explore.coupling_map(trace.couplings, c, config) for c in range(config.num_classes)],
                axis=1)  # [rounds, classes, grid, grid]
st.plotly_chart(figures.class_couplings_figure(maps[round_ - 1], winner, float(maps.max()), classes),
                config={"displayModeBar": False}, key="routing.couplings")

votes_column, senders_column = st.columns([1.4, 1], gap="large")
with votes_column:
    st.subheader("The votes")
    points, agreed = explore.vote_projection(trace.predictions, couplings, winner)
    st.plotly_chart(figures.votes_figure(points, agreed, couplings[winner], winner, classes[winner]),
                    config={"displayModeBar": False}, key="routing.votes")
    name = classes[winner]
    st.caption(f"Each point is one primary capsule's prediction û for capsule {name}, {config.digit_dim}-D, shown "
               "on its two "
               f"principal components; larger and darker points are coupled more strongly to {name} in round "
               f"{round_}. The cross is their coupling-weighted mean, the direction of capsule {name}'s output.")
with senders_column:
    st.subheader("Where the votes come from")
    sent = explore.contributions(trace.predictions, couplings, winner)
    heat = explore.sender_heatmap(sent, config)
    views.show_digit(explore.heat_overlay(image, heat), f"what capsule {classes[winner]} receives, by input region",
                     scale=7, alt="sender overlay")
    rows = explore.top_senders(sent, couplings[winner], config, TOP_SENDERS)
    st.dataframe(rows, hide_index=True, column_config={
        "coupling": st.column_config.NumberColumn(format="%.3f"),
        "sent": st.column_config.NumberColumn(format="%.3f", help="coupling × length of the vote")})
    st.caption(f"Red: each primary capsule's share of capsule {classes[winner]}'s input (coupling × length of its "
               f"vote) spread over the {config.receptive_field}×{config.receptive_field} pixels it sees.")

insight.primary_capsules_section(model, image, trace)
