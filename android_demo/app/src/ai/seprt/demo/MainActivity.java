package ai.seprt.demo;

import ai.seprt.core.Prediction;
import ai.seprt.core.SeprtModel;
import android.app.Activity;
import android.content.Intent;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import android.os.Bundle;
import android.provider.MediaStore;
import android.view.View;
import android.widget.Button;
import android.widget.ImageView;
import android.widget.TextView;
import android.widget.Toast;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Pick an image or take a photo, classify it with the model in assets/demo.bin on a
 * background thread, show the top-5 classes with probabilities and the inference latency, and
 * which execution path ran (the core's fast path).
 */
public class MainActivity extends Activity {
    private static final int REQUEST_PICK = 1;
    private static final int REQUEST_PHOTO = 2;
    /** Decoded images are subsampled to at most this many pixels on their longer side. */
    private static final int MAX_SIDE = 1024;

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private volatile SeprtModel model;
    private TextView info;
    private TextView result;
    private ImageView image;
    private Button pick;
    private Button photo;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        setContentView(R.layout.activity_main);
        info = (TextView) findViewById(R.id.model_info);
        result = (TextView) findViewById(R.id.result);
        image = (ImageView) findViewById(R.id.image);
        pick = (Button) findViewById(R.id.pick);
        photo = (Button) findViewById(R.id.photo);
        pick.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                Intent i = new Intent(Intent.ACTION_GET_CONTENT).setType("image/*").addCategory(Intent.CATEGORY_OPENABLE);
                startActivityForResult(Intent.createChooser(i, getString(R.string.pick)), REQUEST_PICK);
            }
        });
        photo.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                Intent i = new Intent(MediaStore.ACTION_IMAGE_CAPTURE);   // returns a thumbnail in "data"
                if (i.resolveActivity(getPackageManager()) == null) {
                    Toast.makeText(MainActivity.this, R.string.no_camera, Toast.LENGTH_LONG).show();
                    return;
                }
                startActivityForResult(i, REQUEST_PHOTO);
            }
        });
        worker.execute(new Runnable() {
            @Override
            public void run() {
                loadModel();
            }
        });
    }

    @Override
    protected void onDestroy() {
        worker.shutdownNow();
        super.onDestroy();
    }

    /** Worker thread: assets/demo.bin -> model; then enables the buttons. */
    private void loadModel() {
        String text;
        try {
            SeprtModel m = SeprtModel.load(readAsset("demo.bin"), SeprtModel.Path.FAST);
            String source = m.metadata().string("provenance.source", "");
            text = String.format(Locale.ROOT, "%s %s, %,d bytes, input %dx%d, %s path%s", m.arch(), m.variant(),
                    m.fileBytes(), m.inputWidth(), m.inputHeight(), m.path().label(),
                    source.contains("not trained") ? "\nNOTE: random weights (not trained): predictions are meaningless" : "");
            model = m;
        } catch (IOException e) {
            text = "cannot load the model: " + e.getMessage();
        }
        final String shown = text;
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                info.setText(shown);
                pick.setEnabled(model != null);
                photo.setEnabled(model != null);
            }
        });
    }

    private byte[] readAsset(String name) throws IOException {
        InputStream in = getAssets().open(name);
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) {
                out.write(buf, 0, n);
            }
            return out.toByteArray();
        } finally {
            in.close();
        }
    }

    @Override
    protected void onActivityResult(int request, int resultCode, final Intent data) {
        if (resultCode != RESULT_OK || data == null) {
            return;
        }
        final Bitmap thumbnail = request == REQUEST_PHOTO ? (Bitmap) data.getParcelableExtra("data") : null;
        final Uri uri = request == REQUEST_PICK ? data.getData() : null;
        if (thumbnail == null && uri == null) {
            return;
        }
        result.setText("…");
        worker.execute(new Runnable() {
            @Override
            public void run() {
                classify(thumbnail != null ? thumbnail : decode(uri));
            }
        });
    }

    /** Worker thread: content URI -> bitmap, subsampled so that its longer side is at most MAX_SIDE. */
    private Bitmap decode(Uri uri) {
        try {
            BitmapFactory.Options bounds = new BitmapFactory.Options();
            bounds.inJustDecodeBounds = true;
            InputStream in = getContentResolver().openInputStream(uri);
            try {
                BitmapFactory.decodeStream(in, null, bounds);
            } finally {
                in.close();
            }
            BitmapFactory.Options opts = new BitmapFactory.Options();
            opts.inPreferredConfig = Bitmap.Config.ARGB_8888;
            opts.inSampleSize = 1;
            while (Math.max(bounds.outWidth, bounds.outHeight) / opts.inSampleSize > MAX_SIDE) {
                opts.inSampleSize *= 2;
            }
            in = getContentResolver().openInputStream(uri);
            try {
                return BitmapFactory.decodeStream(in, null, opts);
            } finally {
                in.close();
            }
        } catch (IOException | SecurityException e) {
            return null;
        }
    }

    /** Worker thread: bitmap -> model preprocess (the model's resize policy) -> top-5 -> UI. */
    private void classify(final Bitmap bitmap) {
        final String text;
        if (bitmap == null) {
            text = "cannot decode this image";
        } else {
            int w = bitmap.getWidth();
            int h = bitmap.getHeight();
            int[] argb = new int[w * h];
            bitmap.getPixels(argb, 0, w, 0, 0, w, h);
            long t0 = System.nanoTime();
            float[] x = model.preprocess(argb, w, h);
            long t1 = System.nanoTime();
            List<Prediction> top = model.predict(x, 5);
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < top.size(); i++) {
                sb.append(String.format(Locale.ROOT, "%d. %-12s %5.1f%%%n", i + 1, top.get(i).label,
                        100 * top.get(i).probability));
            }
            sb.append(String.format(Locale.ROOT, "%ninference %.1f ms, %s path (preprocess %.1f ms), image %dx%d",
                    model.lastInferenceNanos() / 1e6, model.path().label(), (t1 - t0) / 1e6, w, h));
            text = sb.toString();
        }
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                if (bitmap != null) {
                    image.setImageBitmap(bitmap);
                }
                result.setText(text);
            }
        });
    }
}
