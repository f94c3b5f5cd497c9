// The microphone capture of the page's WebSocket transport (/ws), on the audio thread: posts
// channel 0 as Float32Array blocks of `frames` samples (20 ms at the context's rate) to app.js.
"use strict";

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frames = options.processorOptions.frames;
    this.block = new Float32Array(this.frames);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0][0];  // absent while nothing is connected
    for (let i = 0; input && i < input.length; ) {
      const n = Math.min(input.length - i, this.frames - this.filled);
      this.block.set(input.subarray(i, i + n), this.filled);
      this.filled += n;
      i += n;
      if (this.filled === this.frames) {
        this.port.postMessage(this.block, [this.block.buffer]);
        this.block = new Float32Array(this.frames);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
