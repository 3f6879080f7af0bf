//! Node's queryServer protocol, on each worker's control channel: a worker
//! says hello, asks for a server by key (`listen()`), and says when it closes
//! one. The primary answers with the handle, and for a shared handle a copy
//! of its fd; it binds on the first query for a key (`handles.rs`).

use crate::error::{uv_errno, Context, Error, ProtocolError};
use crate::protocol::{encode_reply, Frame, Query, Reply, VERSION};

use super::handles::{Handles, Kind};
use super::link::ControlRead;
use super::policy::Policy;
use super::rescue::{peer_gone, Rescue};
use super::workers::Workers;
use super::Placement;

/// Reads worker `id`'s control channel dry and answers what it asked; a
/// worker that closed it is gone, one that broke the protocol is cut off.
pub fn read(
    id: u32,
    (policy, placement): (&Policy, Placement),
    workers: &mut Workers,
    handles: &mut Handles,
    rescue: &mut Rescue,
) {
    match read_frames(id, (policy, placement), workers, handles) {
        Ok(true) => {}
        Ok(false) => rescue.drop_worker(id, workers, handles),
        Err(Error::Os { source, .. }) if peer_gone(&source) => rescue.drop_worker(id, workers, handles),
        Err(error) => rescue.cut_off(id, error, workers, handles),
    }
}

/// Handles every frame available. `Ok(false)` on end of stream.
fn read_frames(
    id: u32,
    policy: (&Policy, Placement),
    workers: &mut Workers,
    handles: &mut Handles,
) -> Result<bool, Error> {
    let mut frames = Vec::new();
    loop {
        let Some(link) = workers.get_mut(id) else {
            return Ok(true);
        };
        let read = link.read_control(&mut frames);
        // Frames that came before a garbled one are answered first.
        for frame in frames.drain(..) {
            on_frame(id, frame, policy, workers, handles)?;
        }
        match read? {
            ControlRead::More => {}
            ControlRead::Drained => return Ok(true),
            ControlRead::Ended => return Ok(false),
        }
    }
}

fn on_frame(
    id: u32,
    frame: Frame,
    policy: (&Policy, Placement),
    workers: &mut Workers,
    handles: &mut Handles,
) -> Result<(), Error> {
    let link = workers.get_mut(id).ok_or(Error::Closed)?;
    if !link.greeted() {
        return match frame {
            Frame::Hello { version } if version == VERSION => {
                link.greet();
                Ok(())
            }
            Frame::Hello { version } => Err(ProtocolError::Version(version).into()),
            _ => Err(ProtocolError::WrongDirection.into()),
        };
    }
    match frame {
        Frame::Query(q) => on_query(id, q, policy, workers, handles),
        Frame::Close { handle } => {
            handles.leave(handle, id);
            Ok(())
        }
        Frame::Hello { .. } | Frame::Reply { .. } | Frame::Setup { .. } => Err(ProtocolError::WrongDirection.into()),
    }
}

fn on_query(
    id: u32,
    q: Query,
    (policy, placement): (&Policy, Placement),
    workers: &mut Workers,
    handles: &mut Handles,
) -> Result<(), Error> {
    let link = workers.get_mut(id).ok_or(Error::Closed)?;
    // A disconnecting worker gets no new servers (Node ignores its query too).
    if !link.routing() {
        return Ok(());
    }
    let (reply, fds) = match handles.get_or_create(&q, policy, placement) {
        // The asker's own data comes back, as Node's primary answers with
        // the data of the handle it just tried to create.
        Err(e) => (
            Reply {
                seq: q.seq,
                errno: uv_errno(&e),
                handle: 0,
                shared: false,
                placed: false,
                sockname: None,
                data: q.data,
            },
            Vec::new(),
        ),
        Ok(h) => {
            if !h.workers.contains(&id) {
                h.workers.push(id);
            }
            if h.data.is_null() {
                h.data = q.data;
            }
            let fds = match &mut h.kind {
                Kind::Shared(s) => vec![s.dup_for_reply().during("dup")?],
                // A socket of its own in the group, steered to it once it
                // counts as ready (`Group::watch`).
                Kind::Placed(g) => vec![g.join(id).during("socket")?.try_clone_to_owned().during("dup")?],
                Kind::Accepting(_) => Vec::new(),
            };
            let reply = Reply {
                seq: q.seq,
                errno: 0,
                handle: h.id,
                shared: !fds.is_empty(),
                placed: matches!(h.kind, Kind::Placed(_)),
                sockname: h.sockname.clone(),
                data: h.data.clone(),
            };
            (reply, fds)
        }
    };
    let mut bytes = Vec::new();
    encode_reply(&mut bytes, &reply);
    link.send_control(bytes, fds).during("sendmsg")?;
    Ok(())
}
