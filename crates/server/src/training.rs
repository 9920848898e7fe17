//! `POST /api/shipyard/train`: what `shipyard train --tracking-uri http(s)://...` sends. The body
//! is a [`TrainRequest`] (its table a dataset version: the CLI adds a local file first); the
//! training runs here, through [`Trainer::train`] as the local command runs it, recorded as the
//! logged-in user, and answers in progress lines ([`crate::streamed`]) with the [`Trained`]
//! (`shipyard_training::Trained`) as the result. A client that goes away stops the training at
//! its next check (the run ends KILLED). At most [`Training::concurrent`] trainings run at once;
//! beyond, 503 and the client tries again later.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shipyard_core::Error;
use shipyard_training::{TrainRequest, Trainer, TrainingError, Watch};

use crate::AppState;
use crate::caller::{Caller, actor};
use crate::error::ApiError;
use crate::streamed::{self, Progress};
use crate::wire::MlflowRequest;

/// The trainer of a server and how many trainings may run at once.
#[derive(Clone)]
pub struct Training {
    pub trainer: Trainer,
    /// One permit per training running.
    pub concurrent: Arc<tokio::sync::Semaphore>,
}

impl Training {
    /// At most `slots` trainings at once (each fits on the shared CPU pool).
    pub fn new(trainer: Trainer, slots: usize) -> Training {
        Training { trainer, concurrent: Arc::new(tokio::sync::Semaphore::new(slots.max(1))) }
    }
}

fn training_error(e: TrainingError) -> Error {
    match e {
        TrainingError::Input(message) => Error::invalid(message),
        // The run exists and ended FAILED or KILLED; the message names it.
        TrainingError::Ended { message, .. } => Error::invalid(message),
        TrainingError::Store(e) => e,
    }
}

/// `POST /api/shipyard/train {TrainRequest}` → progress lines, then `{"result": Trained}`.
pub(crate) async fn train(
    State(s): State<AppState>,
    caller: Caller,
    creator: Option<axum::Extension<shipyard_auth::CreatorGrants>>,
    MlflowRequest(mut request): MlflowRequest<TrainRequest>,
) -> Response {
    let Some(training) = s.training.clone() else {
        return ApiError::invalid("this server does not train models").into_response();
    };
    let Ok(permit) = training.concurrent.clone().try_acquire_owned() else {
        return ApiError(Error::Unavailable(
            "the server is running as many trainings as it allows: try again shortly".to_owned(),
        ))
        .into_response();
    };
    request.user = actor(&caller, Some(&request.user));
    let progress = Progress::default();
    let watch = Watch {
        progress: Arc::new({
            let progress = progress.clone();
            move |done, total| progress.set(json!({"done": done, "total": total}))
        }),
        cancel: progress.cancel.clone(),
    };
    let trainer = training.trainer.clone();
    let work = async move {
        let trained = trainer.train(request, watch).await.map_err(training_error);
        drop(permit);
        serde_json::to_value(trained?).map_err(|e| Error::Internal(format!("writing the result: {e}")))
    };
    streamed::answer(work, progress, creator.map(|axum::Extension(c)| c))
}
