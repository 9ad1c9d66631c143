//! Client-side privacy: every request frame the workers receive is captured, and none holds
//! the raw text, the token ids (in any obvious encoding) or the client's output; only the
//! intermediate activations arrive.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use vichain_inference::{
    ActivationDType, Fingerprint, GenerationParams, LayerRange, SentenceEmbedder,
};
use vichain_split::{
    AllowList, InboundTap, MAX_MESSAGE_BYTES, Multiaddr, Request, SplitClient, StepTrace, Worker,
    WorkerConfig,
};

use crate::common::{client_config, f32_bytes, minilm_dir, network};

type Capture = Arc<Mutex<Vec<Vec<u8>>>>;

/// A worker whose every inbound request frame lands in `capture`.
async fn tapped_worker(
    manifest: &Path,
    layers: LayerRange,
    bootstrap: Vec<Multiaddr>,
    capture: &Capture,
) -> Worker {
    let home = tempfile::tempdir().unwrap().keep();
    let mut cfg = WorkerConfig::new(home, manifest.to_path_buf(), layers);
    cfg.network = network(bootstrap, AllowList::all());
    let sink = capture.clone();
    cfg.network.inbound_tap = Some(InboundTap::new(move |_, bytes| {
        sink.lock().unwrap().push(bytes.to_vec());
    }));
    Worker::start(cfg).await.unwrap()
}

async fn tapped_workers(manifest: &Path, ranges: &[LayerRange], capture: &Capture) -> Vec<Worker> {
    let first = tapped_worker(manifest, ranges[0], vec![], capture).await;
    let boot = first.listen_addrs().await.unwrap();
    let mut workers = vec![first];
    for r in &ranges[1..] {
        workers.push(tapped_worker(manifest, *r, boot.clone(), capture).await);
    }
    workers
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The id sequence as the encodings a careless pipeline could put on the wire.
fn id_encodings(ids: &[u32]) -> Vec<(&'static str, Vec<u8>)> {
    let mut e = vec![
        ("u32 le", ids.iter().flat_map(|i| i.to_le_bytes()).collect()),
        ("u32 be", ids.iter().flat_map(|i| i.to_be_bytes()).collect()),
        (
            "u64 le",
            ids.iter()
                .flat_map(|i| u64::from(*i).to_le_bytes())
                .collect(),
        ),
        (
            "f32 le",
            ids.iter().flat_map(|i| (*i as f32).to_le_bytes()).collect(),
        ),
        ("varint", {
            let mut v = Vec::new();
            for i in ids {
                varint(u64::from(*i), &mut v);
            }
            v
        }),
        ("debug text", format!("{ids:?}").into_bytes()),
        (
            "spaced text",
            ids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes(),
        ),
    ];
    if ids.iter().all(|i| *i <= u32::from(u16::MAX)) {
        e.push((
            "u16 le",
            ids.iter().flat_map(|i| (*i as u16).to_le_bytes()).collect(),
        ));
    }
    e
}

/// Asserts that no captured frame holds `ids` or `texts`, that every captured forward
/// request carries an f32 activation, and returns their tensor hashes.
fn check_capture(
    capture: &Capture,
    id_sequences: &[&[u32]],
    texts: &[&str],
    secrets: &[(&str, Vec<u8>)],
) -> Vec<Fingerprint> {
    let frames = capture.lock().unwrap().clone();
    assert!(!frames.is_empty(), "the workers received requests");
    let mut forwarded = Vec::new();
    for (n, frame) in frames.iter().enumerate() {
        for ids in id_sequences {
            assert!(ids.len() >= 2, "too short to be told from noise");
            for (encoding, bytes) in id_encodings(ids) {
                assert!(
                    !contains(frame, &bytes),
                    "frame {n} holds the token ids as {encoding}"
                );
            }
        }
        for text in texts {
            assert!(
                !contains(frame, text.as_bytes()),
                "frame {n} holds {text:?}"
            );
            for word in text.split_whitespace().filter(|w| w.len() >= 6) {
                assert!(
                    !contains(frame, word.as_bytes()),
                    "frame {n} holds {word:?}"
                );
            }
        }
        for (what, bytes) in secrets {
            assert!(!contains(frame, bytes), "frame {n} holds {what}");
        }
        match Request::decode(frame, MAX_MESSAGE_BYTES).unwrap() {
            Request::Forward(f) => {
                assert_eq!(
                    f.activation.dtype(),
                    ActivationDType::F32,
                    "frame {n}: only hidden states reach a worker, never token ids"
                );
                assert!(f.activation.as_u32().is_none());
                forwarded.push(f.tensor_sha256);
            }
            Request::Ping { .. } | Request::EndSession { .. } => {}
        }
    }
    forwarded
}

/// Every activation the client sent, as the trace commits to it.
fn sent_hashes<'a>(traces: impl IntoIterator<Item = &'a StepTrace>) -> Vec<Fingerprint> {
    traces
        .into_iter()
        .flat_map(|t| t.stages.iter().map(|s| s.input_sha256))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_never_see_the_text_or_token_ids_of_an_embedding() {
    const SENTENCE: &str =
        "Confidential: patient Marguerite Okonkwo reported persistent headaches.";
    let dir = tempfile::tempdir().unwrap();
    let ranges = [LayerRange::new(0, 3), LayerRange::new(3, 6)];
    let manifest = crate::common::split_minilm(dir.path(), &ranges);
    let capture = Capture::default();
    let workers = tapped_workers(&manifest, &ranges, &capture).await;
    let boot = workers[0].listen_addrs().await.unwrap();

    let mut client = SplitClient::connect(&manifest, client_config(boot))
        .await
        .unwrap();
    let out = client.embed(SENTENCE).await.unwrap();
    let whole = SentenceEmbedder::from_dir(&minilm_dir()).unwrap();
    assert_eq!(
        f32_bytes(&out.embedding),
        f32_bytes(&whole.embed(SENTENCE).unwrap())
    );
    let ids = whole.tokenize(SENTENCE).unwrap();
    assert!(ids.len() > 10);
    // Without [CLS] and [SEP] too, as a tokenizer without special tokens would give them.
    let inner = &ids[1..ids.len() - 1];
    let embedding = f32_bytes(&out.embedding);

    let forwarded = check_capture(
        &capture,
        &[&ids, inner],
        &[SENTENCE, &SENTENCE.to_lowercase()],
        &[("the sentence embedding", embedding[..64].to_vec())],
    );
    // The activations did arrive: one hidden state per stage, the ones the trace commits to.
    assert_eq!(forwarded, sent_hashes([&out.trace]));
    assert_eq!(forwarded.len(), ranges.len());
    assert_eq!(forwarded[0], out.trace.embedding_sha256);
    for w in workers {
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_never_see_the_prompt_token_ids_or_output_of_a_generation() {
    const USER: &str = "My bank password is hunter2 and my account number is 4417123456789113.";
    let dir = tempfile::tempdir().unwrap();
    let ranges = [
        LayerRange::new(0, 10),
        LayerRange::new(10, 20),
        LayerRange::new(20, 30),
    ];
    let manifest = crate::common::split_smollm2(dir.path(), &ranges);
    let capture = Capture::default();
    let workers = tapped_workers(&manifest, &ranges, &capture).await;
    let boot = workers[0].listen_addrs().await.unwrap();

    let mut client = SplitClient::connect(&manifest, client_config(boot))
        .await
        .unwrap();
    let prompt = client.chat_tokens(USER).unwrap();
    let params = GenerationParams {
        max_new_tokens: 5,
        ..GenerationParams::default()
    };
    let mut s = client
        .start_generation_in(11, &prompt, params)
        .await
        .unwrap();
    while s.next_token().await.unwrap().is_some() {}
    let out = s.finish().await.unwrap();
    assert!(!out.tokens.is_empty());
    let chat = vichain_inference::TextGenerator::chat_prompt(USER);
    let all: Vec<u32> = prompt.iter().chain(&out.tokens).copied().collect();
    let mut id_sequences: Vec<&[u32]> = vec![&prompt, &all];
    if out.tokens.len() >= 2 {
        id_sequences.push(&out.tokens);
    }
    let mut texts = vec![USER, chat.as_str(), "hunter2", "4417123456789113"];
    if out.text.trim().len() >= 8 {
        texts.push(out.text.trim());
    }

    let forwarded = check_capture(&capture, &id_sequences, &texts, &[]);
    // Every step's hidden state went through every stage, and nothing else was forwarded.
    assert_eq!(forwarded, sent_hashes(&out.traces));
    assert_eq!(forwarded.len(), ranges.len() * out.traces.len());
    assert_eq!(out.traces.len(), out.tokens.len());
    for w in workers {
        w.shutdown().await;
    }
}
